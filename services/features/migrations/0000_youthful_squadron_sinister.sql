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
CREATE TABLE `feature_sets` (
	`name` text PRIMARY KEY NOT NULL,
	`version` integer NOT NULL,
	`def_json` text NOT NULL,
	`create_time` integer NOT NULL,
	`update_time` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `feature_views` (
	`name` text NOT NULL,
	`version` integer NOT NULL,
	`def_json` text NOT NULL,
	`create_time` integer NOT NULL,
	`update_time` integer NOT NULL,
	PRIMARY KEY(`name`, `version`)
);
--> statement-breakpoint
CREATE TABLE `offline_rows` (
	`seq` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`view` text NOT NULL,
	`entity_key` text NOT NULL,
	`event_time` integer NOT NULL,
	`write_time` integer NOT NULL,
	`values_json` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `offline_rows_entity_idx` ON `offline_rows` (`view`,`entity_key`,`event_time`,`seq`);--> statement-breakpoint
CREATE INDEX `offline_rows_time_idx` ON `offline_rows` (`view`,`event_time`);--> statement-breakpoint
CREATE TABLE `online_rows` (
	`view` text NOT NULL,
	`entity_key` text NOT NULL,
	`event_time` integer NOT NULL,
	`write_time` integer NOT NULL,
	`values_json` text NOT NULL,
	PRIMARY KEY(`view`, `entity_key`)
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
CREATE TABLE `write_requests` (
	`request_id` text PRIMARY KEY NOT NULL,
	`response_json` text NOT NULL,
	`time` integer NOT NULL
);
