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
 *   insert of a campaign message                 +1 to its status
 *   status (or campaign) change of one           -1 old status of the old campaign, +1 new of the new
 * A message leaves a campaign only when the campaign is deleted (campaign_id SET NULL); the trigger
 * ignores that change and the counts go with the campaign (ON DELETE CASCADE). Messages are never
 * deleted one by one, only with their application, whose campaigns go too.
 * Rows are sharded by transaction id like message_stats_daily, so concurrent batches of one campaign
 * do not queue on one row; a shard may go negative (a message created in one transaction and sent in
 * another), readers SUM the shards.
 *
 * The counter columns of message_campaigns (total_recipients, sent_count, …) are no longer read or
 * written by this release. They are not dropped here: during a rolling deploy the previous
 * release's workers still write them (docs/deployment.md); a later migration drops them.
 */
const SHARDS = 16;
const STATUSES = ["pending", "errored", "successful", "received", "converted", "failed", "cancelled"] as const;

/**
 * The two trigger functions' CREATE statements, over `statuses` plus `extra` counters (each a
 * FILTER condition on `n` for inserts and on `d` — campaign_id, status, sent, delta — for updates).
 * With `bySubscriptionType`, counts are kept per campaign and message subscription_type ('' for
 * none); with `rollUpRuns` (which needs it) the deltas of a recurring campaign's runs are added to
 * `recurring_campaign_counts` under the recurring campaign too. Exported so a later migration that
 * changes the counters, and its down, produce exactly this text; the defaults produce this
 * migration's.
 */
export function campaignCountFunctions(
  extra: ReadonlyArray<{ column: string; onInsert: string; onUpdate: string }> = [],
  orReplace = false,
  bySubscriptionType = false,
  rollUpRuns = false,
): string[] {
  if (rollUpRuns && !bySubscriptionType) throw new Error("the recurring roll-up is kept per subscription type");
  const shard = `(txid_current() % ${SHARDS})::smallint`;
  const columns = [...STATUSES, ...extra.map((e) => e.column)];
  const cols = columns.join(", ");
  const add = columns.map((s) => `${s} = campaign_message_counts.${s} + EXCLUDED.${s}`).join(", ");
  const key = bySubscriptionType ? "campaign_id, subscription_type" : "campaign_id";
  const upsert = (name: string, deltas: string, rows: string, alias: "n" | "d"): string => {
    const group = bySubscriptionType ? `${alias}.campaign_id, ${alias === "n" ? "coalesce(n.subscription_type, '')" : "d.subscription_type"}` : `${alias}.campaign_id`;
    const perCampaign = `SELECT ${group}, ${shard}, ${deltas}
           ${rows}
          GROUP BY ${group}`;
    // The runs' deltas regrouped by their recurring campaign (one-shot campaigns join to no parent).
    const rollUp = rollUpRuns
      ? `
       INSERT INTO recurring_campaign_counts (${key}, shard, ${cols})
         SELECT r.parent_campaign_id, g.subscription_type, g.shard, ${columns.map((c) => `sum(g.${c})::int`).join(", ")}
           FROM (${perCampaign}) AS g (campaign_id, subscription_type, shard, ${cols})
           JOIN message_campaigns r ON r.id = g.campaign_id
          WHERE r.parent_campaign_id IS NOT NULL
          GROUP BY r.parent_campaign_id, g.subscription_type, g.shard
          ORDER BY r.parent_campaign_id, g.subscription_type
       ON CONFLICT (${key}, shard) DO UPDATE SET ${add.replaceAll("campaign_message_counts.", "recurring_campaign_counts.")};`
      : "";
    return `CREATE ${orReplace ? "OR REPLACE " : ""}FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       INSERT INTO campaign_message_counts (${key}, shard, ${cols})
         ${perCampaign}
          ORDER BY ${group}
       ON CONFLICT (${key}, shard) DO UPDATE SET ${add};${rollUp}
       RETURN NULL;
     END;
     $$`;
  };
  const sent = extra.length > 0 ? ", n.sent_at IS NOT NULL" : "";
  const oldSent = extra.length > 0 ? ", o.sent_at IS NOT NULL" : "";
  const type = bySubscriptionType ? ", coalesce(n.subscription_type, '')" : "";
  const oldType = bySubscriptionType ? ", coalesce(o.subscription_type, '')" : "";
  return [
    upsert(
      "campaign_message_counts_on_insert",
      [...STATUSES.map((s) => `count(*) FILTER (WHERE n.status = '${s}')::int`), ...extra.map((e) => `count(*) FILTER (WHERE ${e.onInsert})::int`)].join(", "),
      "FROM new_rows n WHERE n.campaign_id IS NOT NULL",
      "n",
    ),
    // Each changed row contributes +1 (new campaign, new status) and -1 (old campaign, old status).
    upsert(
      "campaign_message_counts_on_update",
      [
        ...STATUSES.map((s) => `coalesce(sum(d.delta) FILTER (WHERE d.status = '${s}'), 0)::int`),
        ...extra.map((e) => `coalesce(sum(d.delta) FILTER (WHERE ${e.onUpdate}), 0)::int`),
      ].join(", "),
      `FROM new_rows n JOIN old_rows o ON o.id = n.id
          CROSS JOIN LATERAL (VALUES (n.campaign_id${type}, n.status${sent}, 1), (o.campaign_id${oldType}, o.status${oldSent}, -1)) AS d (campaign_id${bySubscriptionType ? ", subscription_type" : ""}, status${extra.length > 0 ? ", sent" : ""}, delta)
          WHERE n.campaign_id IS NOT NULL AND d.campaign_id IS NOT NULL
            AND (o.status IS DISTINCT FROM n.status OR o.campaign_id IS DISTINCT FROM n.campaign_id${bySubscriptionType ? " OR o.subscription_type IS DISTINCT FROM n.subscription_type" : ""})`,
      "d",
    ),
  ];
}

/** Creates campaign_message_counts and its statement triggers on messages, then backfills it from messages under a lock. */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE TABLE campaign_message_counts (
    campaign_id uuid NOT NULL REFERENCES message_campaigns (id) ON DELETE CASCADE,
    shard smallint NOT NULL,
    ${STATUSES.map((s) => `${s} integer NOT NULL DEFAULT 0`).join(",\n    ")},
    PRIMARY KEY (campaign_id, shard)
  )`);
  const cols = STATUSES.join(", ");
  for (const statement of campaignCountFunctions()) await knex.raw(statement);
  await knex.raw(`CREATE TRIGGER messages_campaign_counts_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION campaign_message_counts_on_insert()`);
  await knex.raw(`CREATE TRIGGER messages_campaign_counts_update AFTER UPDATE ON messages
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION campaign_message_counts_on_update()`);
  // Backfill under a lock so no message changes between the count and the triggers taking over
  // (CREATE TRIGGER already holds one that blocks message writes until this migration commits:
  // writers wait for one scan of messages).
  await knex.raw(`LOCK TABLE messages IN SHARE MODE`);
  await knex.raw(`INSERT INTO campaign_message_counts (campaign_id, shard, ${cols})
    SELECT m.campaign_id, 0, ${STATUSES.map((s) => `count(*) FILTER (WHERE m.status = '${s}')::int`).join(", ")}
      FROM messages m JOIN message_campaigns c ON c.id = m.campaign_id
     GROUP BY m.campaign_id`);
}

/**
 * Writes the counts back into the campaign row's counter columns (which the previous release reads
 * and recounts itself), then drops the counts, their triggers and functions. Message writes wait
 * from the lock to the commit, so no change falls between the copy and the drop.
 */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`LOCK TABLE messages IN SHARE MODE`);
  await knex.raw(`UPDATE message_campaigns c SET
      total_recipients = t.${STATUSES.join(" + t.")},
      sent_count = t.successful + t.received + t.converted,
      failed_count = t.failed,
      received_count = t.received + t.converted,
      converted_count = t.converted,
      skipped_count = t.cancelled
    FROM (SELECT campaign_id, ${STATUSES.map((s) => `sum(${s})::int AS ${s}`).join(", ")}
            FROM campaign_message_counts GROUP BY campaign_id) t
   WHERE t.campaign_id = c.id`);
  await knex.raw(`DROP TRIGGER IF EXISTS messages_campaign_counts_update ON messages`);
  await knex.raw(`DROP TRIGGER IF EXISTS messages_campaign_counts_insert ON messages`);
  await knex.raw(`DROP FUNCTION IF EXISTS campaign_message_counts_on_update()`);
  await knex.raw(`DROP FUNCTION IF EXISTS campaign_message_counts_on_insert()`);
  await knex.raw(`DROP TABLE IF EXISTS campaign_message_counts`);
}
