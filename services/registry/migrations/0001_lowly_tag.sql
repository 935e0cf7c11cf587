CREATE TABLE `model_aliases` (
	`model_name` text NOT NULL,
	`alias` text NOT NULL,
	`version` integer NOT NULL,
	`update_time` integer NOT NULL,
	PRIMARY KEY(`model_name`, `alias`)
);
--> statement-breakpoint
CREATE TABLE `model_versions` (
	`model_name` text NOT NULL,
	`version` integer NOT NULL,
	`description` text DEFAULT '' NOT NULL,
	`tags_json` text DEFAULT '{}' NOT NULL,
	`artifact_sha256` text NOT NULL,
	`artifact_size_bytes` integer NOT NULL,
	`artifact_json` text NOT NULL,
	`signature_json` text NOT NULL,
	`feature_binding_json` text DEFAULT '{}' NOT NULL,
	`lineage_json` text DEFAULT '{}' NOT NULL,
	`card_json` text DEFAULT '{}' NOT NULL,
	`reference_json` text,
	`stage` integer NOT NULL,
	`created_by` text NOT NULL,
	`create_time` integer NOT NULL,
	`update_time` integer NOT NULL,
	`stage_update_time` integer NOT NULL,
	PRIMARY KEY(`model_name`, `version`)
);
--> statement-breakpoint
CREATE INDEX `model_versions_sha_idx` ON `model_versions` (`artifact_sha256`);--> statement-breakpoint
CREATE UNIQUE INDEX `model_versions_exclusive_stage_idx` ON `model_versions` (`model_name`,`stage`) WHERE stage IN (2, 3);--> statement-breakpoint
CREATE TABLE `promotion_policies` (
	`model_name` text PRIMARY KEY NOT NULL,
	`rules_json` text NOT NULL,
	`revision` integer NOT NULL,
	`updated_by` text NOT NULL,
	`update_time` integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE `uploads` (
	`upload_id` text PRIMARY KEY NOT NULL,
	`principal` text NOT NULL,
	`model_name` text NOT NULL,
	`state` integer NOT NULL,
	`received_bytes` integer DEFAULT 0 NOT NULL,
	`expected_size_bytes` integer DEFAULT 0 NOT NULL,
	`version` integer DEFAULT 0 NOT NULL,
	`error_message` text DEFAULT '' NOT NULL,
	`expire_time` integer NOT NULL,
	`update_time` integer NOT NULL
);
