import type { Knex } from "knex";

/**
 * Campaign execution: the creation Idempotency-Key on message_campaigns, and one message per
 * (campaign, subscription) so a retried batch activity can re-insert its page without duplicates
 * (the batch workflows also address their messages through this index by subscription-id range).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE message_campaigns ADD COLUMN idempotency_key text NULL`);
  await knex.raw(`CREATE UNIQUE INDEX message_campaigns_idempotency_key
    ON message_campaigns (application_id, idempotency_key) WHERE idempotency_key IS NOT NULL`);
  await knex.raw(`CREATE UNIQUE INDEX messages_campaign_id_subscription_id_key
    ON messages (campaign_id, subscription_id) WHERE campaign_id IS NOT NULL`);
}

/** Drops the campaign/subscription and idempotency-key unique indexes and message_campaigns.idempotency_key. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX IF EXISTS messages_campaign_id_subscription_id_key`);
  await knex.raw(`DROP INDEX IF EXISTS message_campaigns_idempotency_key`);
  await knex.raw(`ALTER TABLE message_campaigns DROP COLUMN IF EXISTS idempotency_key`);
}
