CREATE TABLE `ingest_staging` (
	`upload_id` text NOT NULL,
	`seq` integer NOT NULL,
	`entity_key` text NOT NULL,
	`event_time` integer NOT NULL,
	`values_json` text NOT NULL,
	PRIMARY KEY(`upload_id`, `seq`)
);
