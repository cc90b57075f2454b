import type { Knex } from "knex";
import { createIndexConcurrently } from "./20261202000100_subscriptions_audience_index";

/**
 * The reconciler's sweep of sent messages whose receipt window ended without their workflow
 * expiring them (`status = 'successful' AND sent_at < cutoff ORDER BY sent_at LIMIT n`). Only
 * messages awaiting a receipt are in it: each leaves it at its receipt, conversion or expiry, so
 * it holds about the last receipt window's sends, not the table.
 *
 * Built CONCURRENTLY (outside a transaction) so messages keeps taking writes while it builds.
 */
export const config = { transaction: false };

/** Builds messages_awaiting_receipt_idx on (sent_at) over successful messages, concurrently. */
export async function up(knex: Knex): Promise<void> {
  await createIndexConcurrently(knex, "messages_awaiting_receipt_idx", "ON messages (sent_at) WHERE status = 'successful'");
}

/** Drops messages_awaiting_receipt_idx concurrently. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS messages_awaiting_receipt_idx`);
}
