CREATE TABLE `arm_stats` (
	`experiment_key` text NOT NULL,
	`metric` text NOT NULL,
	`arm` text NOT NULL,
	`part` text NOT NULL,
	`stats_json` text NOT NULL,
	PRIMARY KEY(`experiment_key`, `metric`, `arm`, `part`)
);
--> statement-breakpoint
CREATE TABLE `audit_log` (
	`sequence` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`time` integer NOT NULL,
	`principal` text NOT NULL,
	`action` text NOT NULL,
	`resource` text NOT NULL,
	`scope` text NOT NULL,
	`before_json` text NOT NULL,
	`after_json` text NOT NULL,
	`reason` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `audit_log_scope_idx` ON `audit_log` (`scope`,`sequence`);--> statement-breakpoint
CREATE TABLE `comparison_history` (
	`experiment_key` text NOT NULL,
	`metric` text NOT NULL,
	`arm` text NOT NULL,
	`time` integer NOT NULL,
	`n` integer NOT NULL,
	`diff` real NOT NULL,
	`p_value` real NOT NULL,
	`sequential_p_value` real NOT NULL,
	PRIMARY KEY(`experiment_key`, `metric`, `arm`, `time`)
);
--> statement-breakpoint
CREATE TABLE `covariates` (
	`unit_id` text NOT NULL,
	`name` text NOT NULL,
	`experiment_key` text NOT NULL,
	`unit_type` integer NOT NULL,
	`value` real NOT NULL,
	PRIMARY KEY(`unit_id`, `name`, `experiment_key`)
);
--> statement-breakpoint
CREATE TABLE `experiments` (
	`key` text PRIMARY KEY NOT NULL,
	`status` integer NOT NULL,
	`layer` text NOT NULL,
	`unit_type` integer NOT NULL,
	`revision` integer NOT NULL,
	`def_json` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `experiments_status_idx` ON `experiments` (`status`,`key`);--> statement-breakpoint
CREATE TABLE `exposure_counts` (
	`experiment_key` text NOT NULL,
	`phase` integer NOT NULL,
	`arm` text NOT NULL,
	`units` integer NOT NULL,
	PRIMARY KEY(`experiment_key`, `phase`, `arm`)
);
--> statement-breakpoint
CREATE TABLE `exposures` (
	`experiment_key` text NOT NULL,
	`unit_id` text NOT NULL,
	`arm` text NOT NULL,
	`time` integer NOT NULL,
	`phase` integer NOT NULL,
	PRIMARY KEY(`experiment_key`, `unit_id`)
);
--> statement-breakpoint
CREATE INDEX `exposures_unit_idx` ON `exposures` (`unit_id`);--> statement-breakpoint
CREATE TABLE `guardrail_states` (
	`experiment_key` text NOT NULL,
	`metric` text NOT NULL,
	`arm` text NOT NULL,
	`status` integer NOT NULL,
	PRIMARY KEY(`experiment_key`, `metric`, `arm`)
);
--> statement-breakpoint
CREATE TABLE `outbox` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`subject` text NOT NULL,
	`msg_id` text NOT NULL,
	`payload` blob NOT NULL,
	`traceparent` text,
	`tracestate` text,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `outcomes` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`unit_id` text NOT NULL,
	`unit_type` integer NOT NULL,
	`metric` text NOT NULL,
	`value` real NOT NULL,
	`time` integer NOT NULL,
	`outcome_id` text NOT NULL,
	`experiment_key` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `outcomes_unit_idx` ON `outcomes` (`unit_id`);--> statement-breakpoint
CREATE INDEX `outcomes_id_idx` ON `outcomes` (`outcome_id`);--> statement-breakpoint
CREATE TABLE `unit_metrics` (
	`experiment_key` text NOT NULL,
	`metric` text NOT NULL,
	`unit_id` text NOT NULL,
	`arm` text NOT NULL,
	`num` real NOT NULL,
	`den` real NOT NULL,
	`cov` real,
	PRIMARY KEY(`experiment_key`, `metric`, `unit_id`)
);
