import type { Knex } from "knex";
import { createIndexConcurrently } from "./20261202000100_subscriptions_audience_index";

/**
 * Two lookups that read whole tables, growing for ever:
 * - A user's erasure finds the campaigns naming them in `targeting_criteria.external_ids`. Every
 *   run of a recurring campaign copies its parent's targeting (a minute cron: half a million rows
 *   a year, each with the whole id list), and without an index each erasure de-TOASTed and tested
 *   every campaign row of the application, inside the erasure's one transaction. A GIN index on
 *   the id list (jsonb_path_ops: it serves exactly `@>`) finds the rows that name the user.
 * - The reconciler looks for erasure requests left `pending` every pass, oldest first; the table
 *   keeps every request ever made (proof of erasure). A partial index holds only pending ones.
 *
 * Built CONCURRENTLY (outside a transaction) so both tables keep taking writes while they build.
 */
export const config = { transaction: false };

/** Builds a GIN index on campaigns' targeting external_ids and a partial index of pending erasure_requests, concurrently. */
export async function up(knex: Knex): Promise<void> {
  await createIndexConcurrently(knex, "message_campaigns_targeted_external_ids_idx", "ON message_campaigns USING gin ((targeting_criteria->'external_ids') jsonb_path_ops)");
  await createIndexConcurrently(knex, "erasure_requests_pending_idx", "ON erasure_requests (requested_at) WHERE status = 'pending'");
}

/** Drops erasure_requests_pending_idx and message_campaigns_targeted_external_ids_idx concurrently. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS erasure_requests_pending_idx`);
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS message_campaigns_targeted_external_ids_idx`);
}
