PRAGMA foreign_keys=OFF;--> statement-breakpoint
CREATE TABLE `__new_exposures` (
	`experiment_key` text NOT NULL,
	`unit_id` text NOT NULL,
	`arm` text NOT NULL,
	`time` integer NOT NULL,
	`phase` integer NOT NULL,
	PRIMARY KEY(`unit_id`, `experiment_key`)
) WITHOUT ROWID;
--> statement-breakpoint
INSERT INTO `__new_exposures`("experiment_key", "unit_id", "arm", "time", "phase") SELECT "experiment_key", "unit_id", "arm", "time", "phase" FROM `exposures`;--> statement-breakpoint
DROP TABLE `exposures`;--> statement-breakpoint
ALTER TABLE `__new_exposures` RENAME TO `exposures`;--> statement-breakpoint
CREATE TABLE `__new_unit_metrics` (
	`experiment_key` text NOT NULL,
	`metric` text NOT NULL,
	`unit_id` text NOT NULL,
	`arm` text NOT NULL,
	`num` real NOT NULL,
	`den` real NOT NULL,
	`cov` real,
	PRIMARY KEY(`experiment_key`, `metric`, `unit_id`)
) WITHOUT ROWID;
--> statement-breakpoint
INSERT INTO `__new_unit_metrics`("experiment_key", "metric", "unit_id", "arm", "num", "den", "cov") SELECT "experiment_key", "metric", "unit_id", "arm", "num", "den", "cov" FROM `unit_metrics`;--> statement-breakpoint
DROP TABLE `unit_metrics`;--> statement-breakpoint
ALTER TABLE `__new_unit_metrics` RENAME TO `unit_metrics`;--> statement-breakpoint
PRAGMA foreign_keys=ON;