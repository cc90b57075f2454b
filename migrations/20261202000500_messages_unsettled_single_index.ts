import type { Knex } from "knex";
import { createIndexConcurrently } from "./20261202000100_subscriptions_audience_index";

/**
 * The reconciler's scan over individually sent messages still pending or errored, in the order it
 * pages them (`status = ? AND campaign_id IS NULL AND (created_at, id) > position ORDER BY
 * created_at, id LIMIT n`). Errored messages had no index usable without an application id, so
 * every pass read the whole messages table; pending ones went through an index that also holds
 * campaign messages, each checked in the table. Only unsettled single messages are in this one: a
 * campaign message never enters it and a sent message leaves it, so it stays small and costs a
 * campaign nothing.
 *
 * Built CONCURRENTLY (outside a transaction) so a large messages table keeps taking sends while it
 * builds.
 */
export const config = { transaction: false };

/** Builds messages_unsettled_single_idx over pending and errored messages outside campaigns, concurrently. */
export async function up(knex: Knex): Promise<void> {
  await createIndexConcurrently(knex, "messages_unsettled_single_idx", "ON messages (status, created_at, id) WHERE campaign_id IS NULL AND status IN ('pending', 'errored')");
}

/** Drops messages_unsettled_single_idx concurrently. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS messages_unsettled_single_idx`);
}
