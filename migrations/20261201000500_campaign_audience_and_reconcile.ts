import type { Knex } from "knex";

/**
 * Two campaign columns:
 *
 * - `message_campaigns.audience_size`: how many subscriptions matched when the campaign started
 *   paging its audience, written once by the first page (a conditional update, so a retried
 *   activity or a later timezone group never changes it). `GET /campaigns/:id/stats` counts
 *   `remaining` from it: the recipients whose messages the batches have not created yet are still
 *   to be sent. Null before a campaign starts, and for campaigns that started before this column.
 * - `message_campaigns.reconciled_at`: when the reconciler last looked at the campaign. Each pass
 *   takes the active campaigns least recently looked at (never looked at first) and stamps them,
 *   so active campaigns that stay active for months (recurring parents, campaigns scheduled far
 *   ahead) can no longer fill every pass and starve the newer ones behind them. The partial index
 *   serves that order over active campaigns only.
 *
 * Both are nullable without defaults: adding them rewrites nothing, and the release before this
 * one neither reads nor writes them, so it runs unchanged beside this one during a rolling deploy.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE message_campaigns
    ADD COLUMN audience_size integer NULL CONSTRAINT message_campaigns_audience_size_check CHECK (audience_size >= 0),
    ADD COLUMN reconciled_at timestamptz NULL`);
  await knex.raw(`CREATE INDEX message_campaigns_reconcile_idx
    ON message_campaigns (reconciled_at NULLS FIRST, created_at) WHERE status IN ('scheduled', 'running', 'paused')`);
}

/** Drops message_campaigns_reconcile_idx and the audience_size (with its check) and reconciled_at columns. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX IF EXISTS message_campaigns_reconcile_idx`);
  await knex.raw(`ALTER TABLE message_campaigns
    DROP CONSTRAINT IF EXISTS message_campaigns_audience_size_check,
    DROP COLUMN IF EXISTS reconciled_at,
    DROP COLUMN IF EXISTS audience_size`);
}
