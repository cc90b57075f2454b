import type { Knex } from "knex";
import { campaignCountFunctions } from "./20261201000100_campaign_message_counts";
import { FAILED_AFTER_SENT } from "./20261202000200_campaign_counts_failed_after_sent";

/**
 * campaign_message_counts per subscription type: the campaign report shows its key figures per
 * device platform (DESIGN-005 상세 리포트, "푸시 발송 기기": iOS and Android side by side), and
 * counting a million-message campaign's messages by type on every stats read is what these
 * counters exist to avoid.
 *
 * The key becomes (campaign_id, subscription_type, shard); subscription_type is the message's
 * ('' for a message without one). The counts are recounted from messages under the same lock as
 * the earlier backfills (message writes wait for one scan of messages), so the per-type rows start
 * exact, and the trigger functions are replaced in the same transaction.
 */
const STATUSES = ["pending", "errored", "successful", "received", "converted", "failed", "cancelled"] as const;

/** Keys campaign_message_counts by subscription_type, recounts it from messages under a lock, and replaces the trigger functions. */
export async function up(knex: Knex): Promise<void> {
  // Give up rather than queue behind a long transaction with every send queued behind this lock.
  await knex.raw(`SET LOCAL lock_timeout = '10s'`);
  await knex.raw(`LOCK TABLE messages IN SHARE MODE`);
  await knex.raw(`ALTER TABLE campaign_message_counts ADD COLUMN subscription_type text NOT NULL DEFAULT ''`);
  await knex.raw(`ALTER TABLE campaign_message_counts DROP CONSTRAINT campaign_message_counts_pkey`);
  await knex.raw(`TRUNCATE campaign_message_counts`);
  await knex.raw(`INSERT INTO campaign_message_counts (campaign_id, subscription_type, shard, ${STATUSES.join(", ")}, failed_after_sent)
    SELECT m.campaign_id, coalesce(m.subscription_type, ''), 0,
           ${STATUSES.map((s) => `count(*) FILTER (WHERE m.status = '${s}')::int`).join(", ")},
           count(*) FILTER (WHERE m.status = 'failed' AND m.sent_at IS NOT NULL)::int
      FROM messages m JOIN message_campaigns c ON c.id = m.campaign_id
     GROUP BY m.campaign_id, coalesce(m.subscription_type, '')`);
  await knex.raw(`ALTER TABLE campaign_message_counts ADD PRIMARY KEY (campaign_id, subscription_type, shard)`);
  for (const statement of campaignCountFunctions(FAILED_AFTER_SENT, true, true)) await knex.raw(statement);
}

/** Folds the per-type rows back into one row per campaign and shard, and restores the functions. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`SET LOCAL lock_timeout = '10s'`);
  await knex.raw(`LOCK TABLE messages IN SHARE MODE`);
  const columns = [...STATUSES, "failed_after_sent"];
  await knex.raw(`CREATE TEMPORARY TABLE campaign_message_counts_folded ON COMMIT DROP AS
    SELECT campaign_id, shard, ${columns.map((c) => `sum(${c})::int AS ${c}`).join(", ")}
      FROM campaign_message_counts GROUP BY campaign_id, shard`);
  await knex.raw(`TRUNCATE campaign_message_counts`);
  await knex.raw(`ALTER TABLE campaign_message_counts DROP CONSTRAINT campaign_message_counts_pkey`);
  await knex.raw(`ALTER TABLE campaign_message_counts DROP COLUMN subscription_type`);
  await knex.raw(`INSERT INTO campaign_message_counts (campaign_id, shard, ${columns.join(", ")})
    SELECT campaign_id, shard, ${columns.join(", ")} FROM campaign_message_counts_folded`);
  await knex.raw(`ALTER TABLE campaign_message_counts ADD PRIMARY KEY (campaign_id, shard)`);
  for (const statement of campaignCountFunctions(FAILED_AFTER_SENT, true)) await knex.raw(statement);
}
