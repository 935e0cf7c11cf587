CREATE TABLE `batch_jobs` (
	`job_id` text PRIMARY KEY NOT NULL,
	`create_ms` integer NOT NULL,
	`state` integer NOT NULL,
	`job_json` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `batch_jobs_create_idx` ON `batch_jobs` (`create_ms`,`job_id`);