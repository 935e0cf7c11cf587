CREATE TABLE `alert_states` (
	`model_name` text NOT NULL,
	`version` integer NOT NULL,
	`kind` text NOT NULL,
	`subject` text NOT NULL,
	`level` text NOT NULL,
	`clear_streak` integer NOT NULL,
	`evaluations` integer NOT NULL,
	`transitions` integer NOT NULL,
	`baseline` real,
	PRIMARY KEY(`model_name`, `version`, `kind`, `subject`)
);
--> statement-breakpoint
CREATE TABLE `drift_policies` (
	`model_name` text PRIMARY KEY NOT NULL,
	`policy` blob NOT NULL,
	`update_time_ms` integer NOT NULL
);
