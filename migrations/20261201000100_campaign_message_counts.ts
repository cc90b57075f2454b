import type { Knex } from "knex";

/**
 * Live campaign counts, kept by the database instead of recounted by the worker.
 *
 * Before: the campaign row carried counter columns that the worker recounted from the campaign's
 * messages (at most every 2 s per campaign, and at the end), so `GET /campaigns/:id` lagged, stayed
 * stale when a worker died between recounts, and each recount of a million-message campaign read a
 * million index entries. Now `campaign_message_counts` holds how many of a campaign's messages are
 * in each status, maintained by STATEMENT-level triggers on `messages` in the writer's transaction
 * (a rolled-back send or a killed worker's transaction never counts), like message_stats_daily:
 *   insert of a campaign message      +1 to its status
 *   status change of a campaign message  -1 old status, +1 new status
 * Messages are never deleted one by one (only with their application, whose campaigns go too), and
 * a deleted campaign's messages lose their campaign_id (SET NULL), which the update trigger ignores:
 * the counts go with the campaign (ON DELETE CASCADE).
 * Rows are sharded by transaction id like message_stats_daily, so concurrent batches of one campaign
 * do not queue on one row; a shard may go negative (a message created in one transaction and sent in
 * another), readers SUM the shards. The counter columns of message_campaigns are dropped.
 */
const SHARDS = 16;
const STATUSES = ["pending", "errored", "successful", "received", "converted", "failed", "cancelled"] as const;
const COUNTER_COLUMNS = ["total_recipients", "sent_count", "failed_count", "received_count", "converted_count", "skipped_count"] as const;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE TABLE campaign_message_counts (
    campaign_id uuid NOT NULL REFERENCES message_campaigns (id) ON DELETE CASCADE,
    shard smallint NOT NULL,
    ${STATUSES.map((s) => `${s} integer NOT NULL DEFAULT 0`).join(",\n    ")},
    PRIMARY KEY (campaign_id, shard)
  )`);
  const shard = `(txid_current() % ${SHARDS})::smallint`;
  const cols = STATUSES.join(", ");
  const add = STATUSES.map((s) => `${s} = campaign_message_counts.${s} + EXCLUDED.${s}`).join(", ");
  const upsert = (name: string, deltas: string, rows: string): string =>
    `CREATE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       INSERT INTO campaign_message_counts (campaign_id, shard, ${cols})
         SELECT n.campaign_id, ${shard}, ${deltas}
           ${rows}
          GROUP BY n.campaign_id
          ORDER BY n.campaign_id
       ON CONFLICT (campaign_id, shard) DO UPDATE SET ${add};
       RETURN NULL;
     END;
     $$`;
  await knex.raw(
    upsert(
      "campaign_message_counts_on_insert",
      STATUSES.map((s) => `count(*) FILTER (WHERE n.status = '${s}')::int`).join(", "),
      "FROM new_rows n WHERE n.campaign_id IS NOT NULL",
    ),
  );
  await knex.raw(
    upsert(
      "campaign_message_counts_on_update",
      STATUSES.map((s) => `(count(*) FILTER (WHERE n.status = '${s}') - count(*) FILTER (WHERE o.status = '${s}'))::int`).join(", "),
      `FROM new_rows n JOIN old_rows o ON o.id = n.id
          WHERE n.campaign_id IS NOT NULL AND o.campaign_id = n.campaign_id AND o.status IS DISTINCT FROM n.status`,
    ),
  );
  await knex.raw(`CREATE TRIGGER messages_campaign_counts_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION campaign_message_counts_on_insert()`);
  await knex.raw(`CREATE TRIGGER messages_campaign_counts_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION campaign_message_counts_on_update()`);
  // Backfill under a lock so no message changes between the count and the triggers taking over.
  await knex.raw(`LOCK TABLE messages IN SHARE MODE`);
  await knex.raw(`INSERT INTO campaign_message_counts (campaign_id, shard, ${cols})
    SELECT m.campaign_id, 0, ${STATUSES.map((s) => `count(*) FILTER (WHERE m.status = '${s}')::int`).join(", ")}
      FROM messages m JOIN message_campaigns c ON c.id = m.campaign_id
     GROUP BY m.campaign_id`);
  await knex.raw(`ALTER TABLE message_campaigns DROP CONSTRAINT message_campaigns_counters_check`);
  await knex.raw(`ALTER TABLE message_campaigns ${COUNTER_COLUMNS.map((c) => `DROP COLUMN ${c}`).join(", ")}`);
}

/** Restores the counter columns, filled from the counts, and drops the table and its triggers. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE message_campaigns ${COUNTER_COLUMNS.map((c) => `ADD COLUMN ${c} integer NOT NULL DEFAULT 0`).join(", ")}`);
  await knex.raw(`UPDATE message_campaigns c SET
      total_recipients = t.pending + t.errored + t.successful + t.received + t.converted + t.failed + t.cancelled,
      sent_count = t.successful + t.received + t.converted,
      failed_count = t.failed,
      received_count = t.received + t.converted,
      converted_count = t.converted,
      skipped_count = t.cancelled
    FROM (SELECT campaign_id, ${STATUSES.map((s) => `sum(${s})::int AS ${s}`).join(", ")}
            FROM campaign_message_counts GROUP BY campaign_id) t
   WHERE t.campaign_id = c.id`);
  await knex.raw(`ALTER TABLE message_campaigns ADD CONSTRAINT message_campaigns_counters_check CHECK (
    total_recipients >= 0 AND sent_count >= 0 AND failed_count >= 0
    AND received_count >= 0 AND converted_count >= 0 AND skipped_count >= 0)`);
  await knex.raw(`DROP TRIGGER IF EXISTS messages_campaign_counts_update ON messages`);
  await knex.raw(`DROP TRIGGER IF EXISTS messages_campaign_counts_insert ON messages`);
  await knex.raw(`DROP FUNCTION IF EXISTS campaign_message_counts_on_update()`);
  await knex.raw(`DROP FUNCTION IF EXISTS campaign_message_counts_on_insert()`);
  await knex.raw(`DROP TABLE IF EXISTS campaign_message_counts`);
}
