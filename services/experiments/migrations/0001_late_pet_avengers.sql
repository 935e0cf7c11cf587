DROP INDEX `outcomes_id_idx`;--> statement-breakpoint
CREATE UNIQUE INDEX `outcomes_id_uidx` ON `outcomes` (`outcome_id`) WHERE "outcomes"."outcome_id" <> '';