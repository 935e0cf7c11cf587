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
CREATE TABLE `registered_models` (
	`name` text PRIMARY KEY NOT NULL,
	`description` text DEFAULT '' NOT NULL,
	`tags_json` text DEFAULT '{}' NOT NULL,
	`owner` text DEFAULT '' NOT NULL,
	`latest_version` integer DEFAULT 0 NOT NULL,
	`created_by` text NOT NULL,
	`create_time` integer NOT NULL,
	`update_time` integer NOT NULL
);
