import type { Knex } from "knex";
import { createIndexConcurrently } from "./20261202000100_subscriptions_audience_index";

/**
 * A user's erasure finds the subscription events that outlive their devices (a device the user
 * logged out of, or another user logged in on) by `user_id` (indexed) or by
 * `data->>'previous_user_id'`, which no index served: each erasure read every event of its tenant
 * while holding the user's locks (measured 448 ms over 2,000,000 events, growing with the tenant).
 * Only relink events carry the key, so the index is small.
 *
 * Built CONCURRENTLY (outside a transaction) so a large subscription_events table keeps taking
 * writes while it builds.
 */
export const config = { transaction: false };

/** Builds subscription_events_previous_user_idx on data->>'previous_user_id' for erasure lookups, concurrently. */
export async function up(knex: Knex): Promise<void> {
  await createIndexConcurrently(
    knex,
    "subscription_events_previous_user_idx",
    "ON subscription_events (application_id, (data->>'previous_user_id')) WHERE (data->>'previous_user_id') IS NOT NULL",
  );
}

/** Drops subscription_events_previous_user_idx concurrently. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS subscription_events_previous_user_idx`);
}
