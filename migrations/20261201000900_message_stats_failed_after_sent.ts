import type { Knex } from "knex";
import { MESSAGE_COUNTERS, analyticsBackfillFunction, messageStatsTriggerFunctions } from "./20261122005000_analytics";
import { MESSAGE_STATS_SHARDS } from "./20261130000100_message_stats_shards";

/*
 * message_stats_daily.failed_after_sent: of a day's messages, how many failed AFTER the provider
 * accepted them (successful → failed: no receipt before the receipt timeout, SEQ-003 "timeout").
 *
 * `successful` counts messages that ever reached successful and `failed` those that reached failed,
 * so such a message was in both and the analytics API counted it twice in SEQ-003's denominator
 * successful + failed + errored: 100 messages sent, 30 never acknowledged gave a delivery rate of
 * 100/130, and successful + failed exceeded total_sent. With this counter the API counts every
 * message once (failed − failed_after_sent are the failures that never reached the provider).
 *
 * Additive and nullable (readers coalesce): a previous release's reads and writes are unaffected.
 * The trigger functions are the sharded ones of 20261130000100 with the one counter added; the
 * counter is backfilled from `messages` into shard 0 of each key (readers sum the shards).
 */

const SHARD = `(txid_current() % ${MESSAGE_STATS_SHARDS})::smallint`;
const NIL_UUID = "00000000-0000-0000-0000-000000000000";
const KEY = `n.application_id, (n.created_at AT TIME ZONE 'UTC')::date, n.channel,
           coalesce(n.subscription_type, ''), coalesce(n.template_id, '${NIL_UUID}'::uuid)`;
const KEY_COLS = "application_id, day, channel, subscription_type, template_id";
const COUNTERS = [...MESSAGE_COUNTERS, "failed_after_sent"] as const;

/** Entering failed with sent_at set: the provider had accepted the message. failed is terminal, so this counts once. */
const FAILED_AFTER_SENT = `count(*) FILTER (WHERE n.status = 'failed' AND n.sent_at IS NOT NULL)::int`;

function triggerFunctions(): string[] {
  const cols = COUNTERS.join(", ");
  const upsertSet = COUNTERS.map((c) => `${c} = coalesce(message_stats_daily.${c}, 0) + EXCLUDED.${c}`).join(", ");
  const insertDeltas = `count(*)::int,
           count(*) FILTER (WHERE n.status = 'successful')::int,
           count(*) FILTER (WHERE n.status = 'received')::int,
           count(*) FILTER (WHERE n.status = 'converted')::int,
           count(*) FILTER (WHERE n.status = 'failed')::int,
           count(*) FILTER (WHERE n.status = 'cancelled')::int,
           count(*) FILTER (WHERE n.status = 'errored')::int,
           count(*) FILTER (WHERE n.status = 'pending')::int,
           ${FAILED_AFTER_SENT}`;
  const updateDeltas = `0,
           count(*) FILTER (WHERE n.status = 'successful')::int,
           count(*) FILTER (WHERE n.status = 'received')::int,
           count(*) FILTER (WHERE n.status = 'converted')::int,
           count(*) FILTER (WHERE n.status = 'failed')::int,
           count(*) FILTER (WHERE n.status = 'cancelled')::int,
           (count(*) FILTER (WHERE n.status = 'errored') - count(*) FILTER (WHERE o.status = 'errored'))::int,
           (count(*) FILTER (WHERE n.status = 'pending') - count(*) FILTER (WHERE o.status = 'pending'))::int,
           ${FAILED_AFTER_SENT}`;
  const upsertFunction = (name: string, deltas: string, rows: string): string =>
    `CREATE OR REPLACE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       INSERT INTO message_stats_daily (${KEY_COLS}, shard, ${cols})
         SELECT ${KEY}, ${SHARD}, ${deltas}
           ${rows}
          GROUP BY 1, 2, 3, 4, 5, 6
          ORDER BY 1, 2, 3, 4, 5
       ON CONFLICT (${KEY_COLS}, shard)
         DO UPDATE SET ${upsertSet};
       RETURN NULL;
     END;
     $$`;
  return [
    upsertFunction("message_stats_on_insert", insertDeltas, "FROM new_rows n"),
    upsertFunction("message_stats_on_update", updateDeltas, `FROM new_rows n JOIN old_rows o ON o.id = n.id
          WHERE o.status IS DISTINCT FROM n.status`),
  ];
}

/** analytics_backfill() of 20261122005000 with the new counter; the subscription half is unchanged. */
function backfillFunction(): string {
  const original = analyticsBackfillFunction();
  const cols = MESSAGE_COUNTERS.join(", ");
  const withColumn = original
    .replace(`template_id, ${cols})`, `template_id, ${cols}, failed_after_sent)`)
    .replace(
      `count(*) FILTER (WHERE n.status = 'pending')::int
           FROM messages n`,
      `count(*) FILTER (WHERE n.status = 'pending')::int,
                ${FAILED_AFTER_SENT}
           FROM messages n`,
    );
  // A silent no-op replace would rebuild the rollups without the counter.
  if (withColumn === original || !withColumn.includes("failed_after_sent)") || !withColumn.includes(FAILED_AFTER_SENT)) {
    throw new Error("analytics_backfill changed: update 20261201000900 to match");
  }
  return withColumn;
}

/** Adds message_stats_daily.failed_after_sent, makes the trigger and backfill functions count it, and backfills shard 0. */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE message_stats_daily ADD COLUMN failed_after_sent integer DEFAULT 0`);
  for (const sql of triggerFunctions()) await knex.raw(sql);
  await knex.raw(backfillFunction());
  // Existing messages: their key's shard-0 row gets the count (a key whose rows are all in other
  // shards gets a shard-0 row of zeros plus this counter; readers sum the shards either way).
  await knex.raw(
    `INSERT INTO message_stats_daily (${KEY_COLS}, shard, failed_after_sent)
       SELECT ${KEY}, 0, ${FAILED_AFTER_SENT}
         FROM messages n WHERE n.status = 'failed' AND n.sent_at IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5
        ORDER BY 1, 2, 3, 4, 5
     ON CONFLICT (${KEY_COLS}, shard) DO UPDATE SET failed_after_sent = EXCLUDED.failed_after_sent`,
  );
}

/** Restores the sharded trigger functions and the backfill of before, then drops the counter. */
export async function down(knex: Knex): Promise<void> {
  for (const sql of messageStatsTriggerFunctions(SHARD)) await knex.raw(sql);
  await knex.raw(analyticsBackfillFunction());
  await knex.raw(`ALTER TABLE message_stats_daily DROP COLUMN failed_after_sent`);
}
