CREATE TABLE `materialization_jobs` (
	`job_id` text PRIMARY KEY NOT NULL,
	`state` text NOT NULL,
	`job_json` text NOT NULL,
	`create_time` integer NOT NULL,
	`update_time` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `materialization_jobs_state_idx` ON `materialization_jobs` (`state`,`create_time`);--> statement-breakpoint
CREATE TABLE `materialization_watermarks` (
	`view` text PRIMARY KEY NOT NULL,
	`event_time` integer NOT NULL,
	`seq` integer NOT NULL,
	`job_id` text NOT NULL,
	`update_time` integer NOT NULL
);
