import type { Knex } from "knex";
import { createIndexConcurrently } from "./20261202000100_subscriptions_audience_index";

/**
 * The reconciler now also looks, every pass, at erasure requests left `running` (their workflow
 * may have been terminated with the request unfinished); the table keeps every request ever made
 * (proof of erasure), so a partial index holds only the running ones. Built CONCURRENTLY so the
 * table keeps taking writes.
 */
export const config = { transaction: false };

/** Builds a partial index of running erasure_requests, concurrently. */
export async function up(knex: Knex): Promise<void> {
  await createIndexConcurrently(knex, "erasure_requests_running_idx", "ON erasure_requests (requested_at) WHERE status = 'running'");
}

/** Drops erasure_requests_running_idx concurrently. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS erasure_requests_running_idx`);
}
