import type { Knex } from "knex";

/*
 * Analytics rollups (src/analytics): the analytics API reads these small per-day tables instead of
 * scanning `messages` / `subscriptions`, so its cost grows with days × keys, not with rows.
 *
 * message_stats_daily: one row per (application, UTC day the message was CREATED, channel,
 * subscription_type ('' when null), template_id (nil uuid when null)).
 *   created                              messages created that day
 *   successful, received, converted,
 *   failed, cancelled                    of those, how many ever ENTERED that status ("reached")
 *   errored, pending                     of those, how many are in that status NOW (gauges): a
 *                                        message can go errored → pending → errored several times,
 *                                        and one that errored and was then sent must not count
 *                                        against the delivery rate, so these go +1 on entry and
 *                                        −1 on exit.
 * Because every count is attributed to the creation day, a day's figures are one consistent cohort
 * ("of the messages created on day D, how many were received"), and late receipts update the old day.
 *
 * subscription_stats_daily: one row per (application, UTC day of the change, subscription_type).
 *   new_subscriptions   inserted with subscription_status > 0 (day = created_at)
 *   resubscribed        status went from ≤ 0 to > 0 (day = transaction time)
 *   unsubscribed        status went from > 0 to ≤ 0 (day = transaction time)
 *   Deleted rows (erasure, application removal) are not counted as unsubscribes.
 *
 * Both are maintained by STATEMENT-level AFTER triggers with transition tables: one upsert per
 * (statement, key) instead of one per row (a 10 000-row campaign insert touches a handful of rollup
 * rows), applied in key order so concurrent statements lock rollup rows in the same order. They run
 * in the writer's transaction, so a rolled-back status change never reaches the rollup. Key columns
 * of a message (created_at, channel, subscription_type, template_id) are never updated by the
 * pipeline; the trigger attributes a status change to the NEW row's key.
 *
 * The migration backfills both tables from existing rows (analytics_backfill(), also callable later
 * to rebuild one application). Subscription history before this migration is approximated: `new` by
 * created_at for subscriptions that are active or have an unsubscribed_at, `unsubscribed` by
 * unsubscribed_at for inactive ones.
 */

async function run(knex: Knex, statements: readonly string[]): Promise<void> {
  for (const sql of statements) {
    await knex.raw(sql);
  }
}

const NIL_UUID = "00000000-0000-0000-0000-000000000000";

/** Per-row deltas of message_stats_daily, as SQL over a row set `n` (new) and optionally `o` (old). */
export const MESSAGE_COUNTERS = ["created", "successful", "received", "converted", "failed", "cancelled", "errored", "pending"] as const;

/** A message's rollup key as SQL over row `n` (plus the shard expression, if any). */
function rollupKey(shard: string | null): string {
  return `n.application_id, (n.created_at AT TIME ZONE 'UTC')::date, n.channel,
           coalesce(n.subscription_type, ''), coalesce(n.template_id, '${NIL_UUID}'::uuid)${shard ? `, ${shard}` : ""}`;
}

/**
 * The message_stats_daily trigger functions. `shard` (a SQL expression, or null for none) adds the
 * shard column to the rollup key: with it, concurrent transactions upsert different rows of one
 * (application, day, …) key instead of queueing on one (migration 20261130000100).
 */
export function messageStatsTriggerFunctions(shard: string | null): string[] {
  const cols = MESSAGE_COUNTERS.join(", ");
  const upsertSet = MESSAGE_COUNTERS.map((c) => `${c} = message_stats_daily.${c} + EXCLUDED.${c}`).join(", ");
  // Shared SELECT list computing per-key deltas from new rows `n` and (updates) old rows `o`.
  const insertDeltas = `count(*)::int,
           count(*) FILTER (WHERE n.status = 'successful')::int,
           count(*) FILTER (WHERE n.status = 'received')::int,
           count(*) FILTER (WHERE n.status = 'converted')::int,
           count(*) FILTER (WHERE n.status = 'failed')::int,
           count(*) FILTER (WHERE n.status = 'cancelled')::int,
           count(*) FILTER (WHERE n.status = 'errored')::int,
           count(*) FILTER (WHERE n.status = 'pending')::int`;
  const updateDeltas = `0,
           count(*) FILTER (WHERE n.status = 'successful')::int,
           count(*) FILTER (WHERE n.status = 'received')::int,
           count(*) FILTER (WHERE n.status = 'converted')::int,
           count(*) FILTER (WHERE n.status = 'failed')::int,
           count(*) FILTER (WHERE n.status = 'cancelled')::int,
           (count(*) FILTER (WHERE n.status = 'errored') - count(*) FILTER (WHERE o.status = 'errored'))::int,
           (count(*) FILTER (WHERE n.status = 'pending') - count(*) FILTER (WHERE o.status = 'pending'))::int`;
  const key = rollupKey(shard);
  const keyCols = `application_id, day, channel, subscription_type, template_id${shard ? ", shard" : ""}`;
  const groupBy = shard ? "1, 2, 3, 4, 5, 6" : "1, 2, 3, 4, 5";

  // The two functions differ only in their deltas and the row set they read.
  const upsertFunction = (name: string, deltas: string, rows: string): string =>
    `CREATE OR REPLACE FUNCTION ${name}() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       INSERT INTO message_stats_daily (${keyCols}, ${cols})
         SELECT ${key}, ${deltas}
           ${rows}
          GROUP BY ${groupBy}
          ORDER BY 1, 2, 3, 4, 5
       ON CONFLICT (${keyCols})
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

/**
 * The analytics_backfill() function as this migration creates it; exported so a later migration
 * that replaces it can restore this exact text in its down.
 */
export function analyticsBackfillFunction(): string {
  const cols = MESSAGE_COUNTERS.join(", ");
  const key = rollupKey(null);
  return `CREATE OR REPLACE FUNCTION analytics_backfill(app uuid) RETURNS void LANGUAGE plpgsql AS $$
     BEGIN
       DELETE FROM message_stats_daily WHERE app IS NULL OR application_id = app;
       INSERT INTO message_stats_daily (application_id, day, channel, subscription_type, template_id, ${cols})
         SELECT ${key},
                count(*)::int,
                count(*) FILTER (WHERE n.sent_at IS NOT NULL OR n.status IN ('successful', 'received', 'converted'))::int,
                count(*) FILTER (WHERE n.received_at IS NOT NULL OR n.status IN ('received', 'converted'))::int,
                count(*) FILTER (WHERE n.converted_at IS NOT NULL OR n.status = 'converted')::int,
                count(*) FILTER (WHERE n.status = 'failed')::int,
                count(*) FILTER (WHERE n.status = 'cancelled')::int,
                count(*) FILTER (WHERE n.status = 'errored')::int,
                count(*) FILTER (WHERE n.status = 'pending')::int
           FROM messages n
          WHERE app IS NULL OR n.application_id = app
          GROUP BY 1, 2, 3, 4, 5;

       DELETE FROM subscription_stats_daily WHERE app IS NULL OR application_id = app;
       INSERT INTO subscription_stats_daily (application_id, day, subscription_type, new_subscriptions, unsubscribed)
         SELECT application_id, day, subscription_type, sum(new_subscriptions)::int, sum(unsubscribed)::int
           FROM (
             SELECT application_id, (created_at AT TIME ZONE 'UTC')::date AS day, subscription_type,
                    1 AS new_subscriptions, 0 AS unsubscribed
               FROM subscriptions
              WHERE (app IS NULL OR application_id = app)
                AND (subscription_status > 0 OR unsubscribed_at IS NOT NULL)
             UNION ALL
             SELECT application_id, (unsubscribed_at AT TIME ZONE 'UTC')::date, subscription_type, 0, 1
               FROM subscriptions
              WHERE (app IS NULL OR application_id = app)
                AND subscription_status <= 0 AND unsubscribed_at IS NOT NULL
           ) changes
          GROUP BY 1, 2, 3;
     END;
     $$`;
}

/** Creates the rollup tables, triggers and backfill function, then backfills. */
export async function up(knex: Knex): Promise<void> {
  const counterCols = MESSAGE_COUNTERS.map((c) => `${c} integer NOT NULL DEFAULT 0`).join(",\n       ");
  const cols = MESSAGE_COUNTERS.join(", ");
  const key = rollupKey(null);
  await run(knex, [
    `CREATE TABLE message_stats_daily (
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
       day date NOT NULL,
       channel text NOT NULL,
       subscription_type text NOT NULL DEFAULT '',
       template_id uuid NOT NULL DEFAULT '${NIL_UUID}',
       ${counterCols},
       PRIMARY KEY (application_id, day, channel, subscription_type, template_id)
     )`,
    // top converting templates scan one application's template rows over a day range
    `CREATE INDEX message_stats_daily_template_idx ON message_stats_daily (application_id, template_id, day)
       WHERE template_id <> '${NIL_UUID}'`,

    `CREATE TABLE subscription_stats_daily (
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
       day date NOT NULL,
       subscription_type text NOT NULL,
       new_subscriptions integer NOT NULL DEFAULT 0,
       resubscribed integer NOT NULL DEFAULT 0,
       unsubscribed integer NOT NULL DEFAULT 0,
       PRIMARY KEY (application_id, day, subscription_type)
     )`,

    // ---------------------------------------------------------------- messages triggers
    ...messageStatsTriggerFunctions(null),
    `CREATE TRIGGER messages_stats_insert AFTER INSERT ON messages
       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION message_stats_on_insert()`,
    // Transition tables cannot be combined with a column list (UPDATE OF status); the WHERE above
    // keeps non-status updates (e.g. subscription_id SET NULL) from writing anything.
    `CREATE TRIGGER messages_stats_update AFTER UPDATE ON messages
       REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION message_stats_on_update()`,

    // ---------------------------------------------------------------- subscriptions triggers
    `CREATE OR REPLACE FUNCTION subscription_stats_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       INSERT INTO subscription_stats_daily (application_id, day, subscription_type, new_subscriptions)
         SELECT n.application_id, (n.created_at AT TIME ZONE 'UTC')::date, n.subscription_type, count(*)::int
           FROM new_rows n
          WHERE n.subscription_status > 0
          GROUP BY 1, 2, 3
          ORDER BY 1, 2, 3
       ON CONFLICT (application_id, day, subscription_type)
         DO UPDATE SET new_subscriptions = subscription_stats_daily.new_subscriptions + EXCLUDED.new_subscriptions;
       RETURN NULL;
     END;
     $$`,
    `CREATE OR REPLACE FUNCTION subscription_stats_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       INSERT INTO subscription_stats_daily (application_id, day, subscription_type, resubscribed, unsubscribed)
         SELECT n.application_id, (now() AT TIME ZONE 'UTC')::date, n.subscription_type,
                count(*) FILTER (WHERE o.subscription_status <= 0 AND n.subscription_status > 0)::int,
                count(*) FILTER (WHERE o.subscription_status > 0 AND n.subscription_status <= 0)::int
           FROM new_rows n JOIN old_rows o ON o.id = n.id
          WHERE (o.subscription_status > 0) <> (n.subscription_status > 0)
          GROUP BY 1, 2, 3
          ORDER BY 1, 2, 3
       ON CONFLICT (application_id, day, subscription_type)
         DO UPDATE SET resubscribed = subscription_stats_daily.resubscribed + EXCLUDED.resubscribed,
                       unsubscribed = subscription_stats_daily.unsubscribed + EXCLUDED.unsubscribed;
       RETURN NULL;
     END;
     $$`,
    `CREATE TRIGGER subscriptions_stats_insert AFTER INSERT ON subscriptions
       REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION subscription_stats_on_insert()`,
    `CREATE TRIGGER subscriptions_stats_update AFTER UPDATE ON subscriptions
       REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION subscription_stats_on_update()`,

    // ---------------------------------------------------------------- backfill
    // Rebuilds the rollups of one application (or all, with NULL) from the base tables. Run it in a
    // quiet moment or inside a transaction that locks the base tables: concurrent writes between
    // the DELETE and the INSERT would be counted by their triggers and lost by the rebuild.
    analyticsBackfillFunction(),
    `SELECT analytics_backfill(NULL)`,
  ]);
}

/** Drops the triggers, functions and rollup tables. */
export async function down(knex: Knex): Promise<void> {
  await run(knex, [
    `DROP TRIGGER IF EXISTS subscriptions_stats_update ON subscriptions`,
    `DROP TRIGGER IF EXISTS subscriptions_stats_insert ON subscriptions`,
    `DROP TRIGGER IF EXISTS messages_stats_update ON messages`,
    `DROP TRIGGER IF EXISTS messages_stats_insert ON messages`,
    `DROP FUNCTION IF EXISTS analytics_backfill(uuid)`,
    `DROP FUNCTION IF EXISTS subscription_stats_on_update()`,
    `DROP FUNCTION IF EXISTS subscription_stats_on_insert()`,
    `DROP FUNCTION IF EXISTS message_stats_on_update()`,
    `DROP FUNCTION IF EXISTS message_stats_on_insert()`,
    `DROP TABLE IF EXISTS subscription_stats_daily`,
    `DROP TABLE IF EXISTS message_stats_daily`,
  ]);
}
