import type { Knex } from "knex";

/**
 * Drops message_campaigns' DESIGN-003 counter columns (total_recipients, sent_count, failed_count,
 * received_count, converted_count, skipped_count).
 *
 * Nothing has read or written them since `20261201000100_campaign_message_counts`: a campaign's
 * counts are the sum of its `campaign_message_counts` shards, kept by triggers on messages. That
 * migration kept them for one release because the release before it still wrote them during a
 * rolling deploy; every release since writes the counts table only, so dropping them now cannot
 * break the version still running while this one rolls out. Upgrading straight from a release
 * older than the counts migration to this one is not a rolling deploy (see docs/deployment.md).
 */
const COUNTERS = ["total_recipients", "sent_count", "failed_count", "received_count", "converted_count", "skipped_count"] as const;

/** Drops message_campaigns_counters_check and message_campaigns' six DESIGN-003 counter columns. */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE message_campaigns DROP CONSTRAINT IF EXISTS message_campaigns_counters_check`);
  await knex.raw(`ALTER TABLE message_campaigns ${COUNTERS.map((c) => `DROP COLUMN IF EXISTS ${c}`).join(", ")}`);
}

/**
 * Puts the columns back at zero. The release this rolls back to does not read them; rolling back
 * the counts migration too refills them from the counts before it drops those.
 */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE message_campaigns ${COUNTERS.map((c) => `ADD COLUMN ${c} integer NOT NULL DEFAULT 0`).join(", ")}`);
  await knex.raw(`ALTER TABLE message_campaigns ADD CONSTRAINT message_campaigns_counters_check CHECK (
    ${COUNTERS.map((c) => `${c} >= 0`).join(" AND ")})`);
}
