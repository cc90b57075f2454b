import type { Knex } from "knex";
import { campaignCountFunctions } from "./20261201000100_campaign_message_counts";
import { FAILED_AFTER_SENT } from "./20261202000200_campaign_counts_failed_after_sent";

/**
 * A recurring campaign's counts, kept as they change instead of summed over every run on each read.
 *
 * A recurring campaign sends nothing itself: its counts were the sum of its runs' count rows, up to
 * 32 per run (16 shards × 2 platforms). A minute cron makes 1,440 runs a day, so after a year
 * `GET /campaigns/:id`, its stats and the campaign list summed some sixteen million rows per read.
 * Now the message triggers also add each run's deltas to `recurring_campaign_counts` under its
 * recurring campaign (same shards, same columns), in the same statement and transaction, and the
 * readers take a recurring campaign's counts from there: at most 32 rows, however many runs.
 * Each run keeps its own counts in campaign_message_counts (`GET /campaigns/:id/runs`).
 *
 * A table of its own, not rows under the recurring campaign's id in campaign_message_counts: the
 * previous release, still serving during a rolling deploy, sums a recurring campaign's own rows
 * and its runs', and would count everything twice.
 *
 * The backfill sums the runs' counts under the same lock as the earlier backfills (message writes
 * wait for one scan of campaign_message_counts; its rows change only with messages), with the
 * trigger functions replaced in the same transaction. bigint: one row collects about a sixteenth of
 * a platform's messages over the campaign's whole life (a minute cron to 100,000 devices passes
 * 2^31 in a shard within a year).
 */
const COLUMNS = ["pending", "errored", "successful", "received", "converted", "failed", "cancelled", "failed_after_sent"] as const;

/** Creates recurring_campaign_counts, backfills it from the runs' counts, and makes the triggers roll run deltas up into it. */
export async function up(knex: Knex): Promise<void> {
  // Give up rather than queue behind a long transaction with every send queued behind this lock.
  await knex.raw(`SET LOCAL lock_timeout = '10s'`);
  await knex.raw(`LOCK TABLE messages IN SHARE MODE`);
  await knex.raw(`CREATE TABLE recurring_campaign_counts (
    campaign_id uuid NOT NULL REFERENCES message_campaigns (id) ON DELETE CASCADE,
    subscription_type text NOT NULL DEFAULT '',
    shard smallint NOT NULL,
    ${COLUMNS.map((c) => `${c} bigint NOT NULL DEFAULT 0`).join(",\n    ")},
    PRIMARY KEY (campaign_id, subscription_type, shard)
  )`);
  await knex.raw(`INSERT INTO recurring_campaign_counts (campaign_id, subscription_type, shard, ${COLUMNS.join(", ")})
    SELECT r.parent_campaign_id, c.subscription_type, 0, ${COLUMNS.map((c) => `sum(c.${c})::bigint`).join(", ")}
      FROM campaign_message_counts c JOIN message_campaigns r ON r.id = c.campaign_id
     WHERE r.parent_campaign_id IS NOT NULL
     GROUP BY r.parent_campaign_id, c.subscription_type`);
  for (const statement of campaignCountFunctions(FAILED_AFTER_SENT, true, true, true)) await knex.raw(statement);
}

/** Restores the trigger functions without the recurring roll-up and drops recurring_campaign_counts. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`SET LOCAL lock_timeout = '10s'`);
  await knex.raw(`LOCK TABLE messages IN SHARE MODE`);
  for (const statement of campaignCountFunctions(FAILED_AFTER_SENT, true, true)) await knex.raw(statement);
  await knex.raw(`DROP TABLE recurring_campaign_counts`);
}
