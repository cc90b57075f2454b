import type { Knex } from "knex";
import { campaignCountFunctions } from "./20261201000100_campaign_message_counts";

/**
 * campaign_message_counts.failed_after_sent: of a campaign's failed messages, how many had been
 * accepted by the provider (successful → failed: no receipt before the receipt timeout).
 *
 * The campaign stats counted such a message as failed, so 72 hours after a campaign nearly all of
 * its `successful_count` moved to `failed_count` and its delivery rate fell to the receipt rate
 * (REF-001 §6.5 reports a completed campaign with successful 5,380 and received 4,930: accepted by
 * the provider, and confirmed by the device, are different counts). With this counter the API
 * reports `successful_count` as accepted by the provider, `failed_count` as never accepted, the
 * same split the analytics API makes with message_stats_daily.failed_after_sent.
 *
 * A column with a constant default adds no rewrite; the previous release's trigger functions
 * (replaced here) leave it 0, and it is backfilled from messages into shard 0 of each campaign
 * under the same lock as the first backfill of these counts.
 */
/** The failed_after_sent counter of the trigger functions (shared with later migrations that replace them). */
export const FAILED_AFTER_SENT = [{ column: "failed_after_sent", onInsert: "n.status = 'failed' AND n.sent_at IS NOT NULL", onUpdate: "d.status = 'failed' AND d.sent" }];

/** Adds campaign_message_counts.failed_after_sent, makes the trigger functions count it, and backfills it under a lock. */
export async function up(knex: Knex): Promise<void> {
  // messages first, as its writers do (their triggers then write the counts): the other order can deadlock with them.
  // Give up rather than queue behind a long transaction with every send queued behind this lock.
  await knex.raw(`SET LOCAL lock_timeout = '10s'`);
  await knex.raw(`LOCK TABLE messages IN SHARE MODE`);
  await knex.raw(`ALTER TABLE campaign_message_counts ADD COLUMN failed_after_sent integer NOT NULL DEFAULT 0`);
  for (const statement of campaignCountFunctions(FAILED_AFTER_SENT, true)) await knex.raw(statement);
  await knex.raw(`INSERT INTO campaign_message_counts (campaign_id, shard, failed_after_sent)
    SELECT m.campaign_id, 0, count(*)::int
      FROM messages m JOIN message_campaigns c ON c.id = m.campaign_id
     WHERE m.status = 'failed' AND m.sent_at IS NOT NULL
     GROUP BY m.campaign_id
    ON CONFLICT (campaign_id, shard) DO UPDATE SET failed_after_sent = EXCLUDED.failed_after_sent`);
}

/** Restores the trigger functions without failed_after_sent and drops that column. */
export async function down(knex: Knex): Promise<void> {
  for (const statement of campaignCountFunctions([], true)) await knex.raw(statement);
  await knex.raw(`ALTER TABLE campaign_message_counts DROP COLUMN IF EXISTS failed_after_sent`);
}
