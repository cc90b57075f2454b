import type { Knex } from "knex";
import { MESSAGE_COUNTERS, messageStatsTriggerFunctions } from "./20261122005000_analytics";

/**
 * Sharded message rollup rows. Every transaction that inserts messages or changes their status
 * upserts the message_stats_daily row of its (application, day, channel, type, template), so during
 * a campaign all of them queued on one row: bench:campaign saw ~6 PostgreSQL sessions waiting on
 * each other's commits for every one running. A `shard` (the transaction id modulo
 * MESSAGE_STATS_SHARDS) joins the key: concurrent transactions write different rows, each
 * transaction keeps one shard (so its own rows still lock in key order), and readers already SUM
 * over the key, so they are unchanged. The backfill writes shard 0.
 */
export const MESSAGE_STATS_SHARDS = 16;

/** Adds shard to message_stats_daily's primary key and makes the trigger functions write to the transaction's shard. */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE message_stats_daily ADD COLUMN shard smallint NOT NULL DEFAULT 0`);
  await knex.raw(`ALTER TABLE message_stats_daily DROP CONSTRAINT message_stats_daily_pkey`);
  await knex.raw(`ALTER TABLE message_stats_daily ADD PRIMARY KEY (application_id, day, channel, subscription_type, template_id, shard)`);
  for (const sql of messageStatsTriggerFunctions(`(txid_current() % ${MESSAGE_STATS_SHARDS})::smallint`)) await knex.raw(sql);
}

/** Folds the shards back into one row per key and restores the unsharded triggers. */
export async function down(knex: Knex): Promise<void> {
  for (const sql of messageStatsTriggerFunctions(null)) await knex.raw(sql);
  const sums = MESSAGE_COUNTERS.map((c) => `sum(${c})::int AS ${c}`).join(", ");
  const cols = MESSAGE_COUNTERS.join(", ");
  await knex.raw(`CREATE TEMP TABLE message_stats_folded ON COMMIT DROP AS
    SELECT application_id, day, channel, subscription_type, template_id, ${sums}
      FROM message_stats_daily GROUP BY 1, 2, 3, 4, 5`);
  await knex.raw(`DELETE FROM message_stats_daily`);
  await knex.raw(`ALTER TABLE message_stats_daily DROP CONSTRAINT message_stats_daily_pkey`);
  await knex.raw(`ALTER TABLE message_stats_daily DROP COLUMN shard`);
  await knex.raw(`ALTER TABLE message_stats_daily ADD PRIMARY KEY (application_id, day, channel, subscription_type, template_id)`);
  await knex.raw(`INSERT INTO message_stats_daily (application_id, day, channel, subscription_type, template_id, ${cols})
    SELECT application_id, day, channel, subscription_type, template_id, ${cols} FROM message_stats_folded`);
}
