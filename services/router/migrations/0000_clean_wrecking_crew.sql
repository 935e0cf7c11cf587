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
CREATE TABLE `endpoints` (
	`name` text PRIMARY KEY NOT NULL,
	`model` text NOT NULL,
	`spec` blob NOT NULL,
	`generation` integer NOT NULL,
	`plan` blob NOT NULL,
	`plan_revision` integer NOT NULL,
	`plan_update_time` integer NOT NULL,
	`active_rollout_id` text NOT NULL,
	`create_time` integer NOT NULL,
	`update_time` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `endpoints_model_idx` ON `endpoints` (`model`,`name`);--> statement-breakpoint
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
CREATE TABLE `rollouts` (
	`id` text PRIMARY KEY NOT NULL,
	`endpoint` text NOT NULL,
	`state` integer NOT NULL,
	`terminal` integer NOT NULL,
	`rollout` blob NOT NULL,
	`create_time` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `rollouts_endpoint_idx` ON `rollouts` (`endpoint`,`create_time`);--> statement-breakpoint
CREATE INDEX `rollouts_terminal_idx` ON `rollouts` (`terminal`);