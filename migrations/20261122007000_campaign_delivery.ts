import type { Knex } from "knex";

/**
 * Campaign delivery: recurring campaigns (a Temporal Schedule per campaign, one run row per fire),
 * timezone delivery, per-application pacing, batch membership of campaign messages, test sends.
 *
 * - `message_campaigns.schedule` (from the messaging migration: cron, timezone, start_at, end_at)
 *   marks a recurring campaign; each
 *   fire creates a run: a campaign row with `parent_campaign_id` and a unique `run_key` (the
 *   schedule's workflow id), so a retried run never creates a second row.
 * - `message_campaigns.delivery` holds `{mode: "timezone", local_time, fallback_timezone}`.
 * - `messages.campaign_batch` names the batch that owns a campaign message. Timezone groups page the
 *   audience separately, so subscription-id ranges of different batches overlap; the batch number
 *   does not.
 * - `message_campaigns.request_hash` fingerprints the create request, so reusing an Idempotency-Key
 *   with a different body is refused instead of answering the first campaign.
 * - `applications.campaign_max_per_minute` is the ceiling over all of an application's campaigns;
 *   `application_send_pacing` is the shared schedule that enforces it (next free send instant).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE message_campaigns
    ADD COLUMN delivery jsonb NULL,
    ADD COLUMN parent_campaign_id uuid NULL,
    ADD COLUMN run_key text NULL,
    ADD COLUMN request_hash text NULL,
    ADD CONSTRAINT message_campaigns_parent_fk FOREIGN KEY (application_id, parent_campaign_id)
      REFERENCES message_campaigns (application_id, id) ON DELETE CASCADE`);
  await knex.raw(`CREATE UNIQUE INDEX message_campaigns_parent_campaign_id_run_key
    ON message_campaigns (parent_campaign_id, run_key) WHERE parent_campaign_id IS NOT NULL`);
  await knex.raw(`CREATE INDEX message_campaigns_parent_campaign_id_created_at_idx
    ON message_campaigns (parent_campaign_id, created_at) WHERE parent_campaign_id IS NOT NULL`);
  await knex.raw(`ALTER TABLE messages
    ADD COLUMN campaign_batch integer NULL`);
  await knex.raw(`CREATE INDEX messages_campaign_id_campaign_batch_idx
    ON messages (campaign_id, campaign_batch) WHERE campaign_id IS NOT NULL`);
  await knex.raw(`ALTER TABLE applications
    ADD COLUMN campaign_max_per_minute integer NULL
      CONSTRAINT applications_campaign_max_per_minute_check CHECK (campaign_max_per_minute > 0)`);
  await knex.raw(`CREATE TABLE application_send_pacing (
    application_id uuid PRIMARY KEY REFERENCES applications (id) ON DELETE CASCADE,
    next_free_at timestamptz NOT NULL
  )`);
}

/** Drops application_send_pacing, campaign_max_per_minute, campaign_batch and the campaign run/delivery columns, indexes and FK. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE IF EXISTS application_send_pacing`);
  await knex.raw(`ALTER TABLE applications DROP COLUMN IF EXISTS campaign_max_per_minute`);
  await knex.raw(`DROP INDEX IF EXISTS messages_campaign_id_campaign_batch_idx`);
  await knex.raw(`ALTER TABLE messages DROP COLUMN IF EXISTS campaign_batch`);
  await knex.raw(`DROP INDEX IF EXISTS message_campaigns_parent_campaign_id_created_at_idx`);
  await knex.raw(`DROP INDEX IF EXISTS message_campaigns_parent_campaign_id_run_key`);
  await knex.raw(`ALTER TABLE message_campaigns DROP CONSTRAINT IF EXISTS message_campaigns_parent_fk,
    DROP COLUMN IF EXISTS run_key, DROP COLUMN IF EXISTS request_hash, DROP COLUMN IF EXISTS parent_campaign_id,
    DROP COLUMN IF EXISTS delivery`);
}
