import type { Knex } from "knex";

/**
 * Messaging tables: message_templates, message_template_versions, message_campaigns,
 * messages, message_events.
 *
 * messages / message_events are not partitioned yet; docs/data-model.md describes the
 * monthly range-partitioning plan.
 */

async function run(knex: Knex, statements: readonly string[]): Promise<void> {
  for (const sql of statements) {
    await knex.raw(sql);
  }
}

function updatedAtTrigger(table: string): string {
  return `CREATE TRIGGER ${table}_set_updated_at BEFORE UPDATE ON ${table}
    FOR EACH ROW EXECUTE FUNCTION set_updated_at()`;
}

// DESIGN-003 Message.channel_type values.
const CHANNELS = `('push', 'email', 'sms', 'kakao_talk', 'in_app')`;
const SUBSCRIPTION_TYPES = `('iOSPush', 'AndroidPush', 'Email', 'SMS', 'KakaoTalk', 'InAppMessage')`;

/** Creates message_templates, immutable message_template_versions, message_campaigns, messages and message_events with their indexes. */
export async function up(knex: Knex): Promise<void> {
  await run(knex, [
    // ------------------------------------------------------------------ message_templates
    `CREATE TABLE message_templates (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
       name text NOT NULL CONSTRAINT message_templates_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
       description text NULL,
       channel text NOT NULL DEFAULT 'push'
         CONSTRAINT message_templates_channel_check CHECK (channel IN ${CHANNELS}),
       is_active boolean NOT NULL DEFAULT true,
       current_version integer NOT NULL DEFAULT 1
         CONSTRAINT message_templates_current_version_check CHECK (current_version >= 1),
       created_at timestamptz NOT NULL DEFAULT now(),
       updated_at timestamptz NOT NULL DEFAULT now(),
       CONSTRAINT message_templates_application_id_name_key UNIQUE (application_id, name),
       CONSTRAINT message_templates_application_id_id_key UNIQUE (application_id, id)
     )`,
    updatedAtTrigger("message_templates"),

    // ------------------------------------------------------------------ message_template_versions
    `CREATE TABLE message_template_versions (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       template_id uuid NOT NULL,
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
       version integer NOT NULL CONSTRAINT message_template_versions_version_check CHECK (version >= 1),
       title text NULL,
       body text NOT NULL,
       data_template jsonb NOT NULL DEFAULT '{}'::jsonb,
       variables jsonb NOT NULL DEFAULT '[]'::jsonb
         CONSTRAINT message_template_versions_variables_array CHECK (jsonb_typeof(variables) = 'array'),
       options jsonb NOT NULL DEFAULT '{}'::jsonb,
       created_at timestamptz NOT NULL DEFAULT now(),
       CONSTRAINT message_template_versions_template_id_version_key UNIQUE (template_id, version),
       CONSTRAINT message_template_versions_template_fk FOREIGN KEY (application_id, template_id)
         REFERENCES message_templates (application_id, id) ON DELETE CASCADE
     )`,
    // Versions are immutable: messages record (template_id, template_version) and must be
    // reproducible. Deletes (template / application removal) remain allowed.
    `CREATE OR REPLACE FUNCTION message_template_versions_immutable() RETURNS trigger
       LANGUAGE plpgsql AS $$
     BEGIN
       RAISE EXCEPTION 'message_template_versions rows are immutable; insert a new version instead'
         USING ERRCODE = 'integrity_constraint_violation';
     END;
     $$`,
    `CREATE TRIGGER message_template_versions_no_update BEFORE UPDATE ON message_template_versions
       FOR EACH ROW EXECUTE FUNCTION message_template_versions_immutable()`,

    // ------------------------------------------------------------------ message_campaigns
    `CREATE TABLE message_campaigns (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
       template_id uuid NULL,
       template_version integer NULL,
       name text NOT NULL CONSTRAINT message_campaigns_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
       description text NULL,
       channel text NOT NULL DEFAULT 'push'
         CONSTRAINT message_campaigns_channel_check CHECK (channel IN ${CHANNELS}),
       campaign_type text NOT NULL DEFAULT 'immediate'
         CONSTRAINT message_campaigns_campaign_type_check
         CHECK (campaign_type IN ('immediate', 'scheduled', 'triggered', 'recurring')),
       content jsonb NOT NULL DEFAULT '{}'::jsonb,
       targeting_criteria jsonb NOT NULL DEFAULT '{}'::jsonb,
       status text NOT NULL DEFAULT 'draft'
         CONSTRAINT message_campaigns_status_check
         CHECK (status IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled', 'failed')),
       schedule jsonb NULL,
       throttle_per_minute integer NULL
         CONSTRAINT message_campaigns_throttle_per_minute_check CHECK (throttle_per_minute > 0),
       scheduled_at timestamptz NULL,
       started_at timestamptz NULL,
       completed_at timestamptz NULL,
       cancelled_at timestamptz NULL,
       workflow_id text NULL,
       created_by text NULL,
       error_message text NULL,
       total_recipients integer NOT NULL DEFAULT 0,
       sent_count integer NOT NULL DEFAULT 0,
       failed_count integer NOT NULL DEFAULT 0,
       received_count integer NOT NULL DEFAULT 0,
       converted_count integer NOT NULL DEFAULT 0,
       skipped_count integer NOT NULL DEFAULT 0,
       created_at timestamptz NOT NULL DEFAULT now(),
       updated_at timestamptz NOT NULL DEFAULT now(),
       CONSTRAINT message_campaigns_counters_check CHECK (
         total_recipients >= 0 AND sent_count >= 0 AND failed_count >= 0
         AND received_count >= 0 AND converted_count >= 0 AND skipped_count >= 0),
       CONSTRAINT message_campaigns_application_id_id_key UNIQUE (application_id, id),
       CONSTRAINT message_campaigns_template_fk FOREIGN KEY (application_id, template_id)
         REFERENCES message_templates (application_id, id) ON DELETE SET NULL (template_id)
     )`,
    `CREATE INDEX message_campaigns_application_id_status_created_at_idx
       ON message_campaigns (application_id, status, created_at)`,
    `CREATE INDEX message_campaigns_application_id_template_id_idx
       ON message_campaigns (application_id, template_id)
       WHERE template_id IS NOT NULL`,
    // system-wide scan for due scheduled campaigns (not tenant-scoped on purpose)
    `CREATE INDEX message_campaigns_due_idx
       ON message_campaigns (scheduled_at)
       WHERE status = 'scheduled'`,
    updatedAtTrigger("message_campaigns"),

    // ------------------------------------------------------------------ messages
    // template_id and resent_from_id are deliberately soft references (no FK): messages are
    // the largest table and must not be scanned/updated when a template or an older
    // message is deleted, and a future partitioned messages table cannot be the target of
    // a FK on id alone.
    `CREATE TABLE messages (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
       subscription_id uuid NULL,
       user_id uuid NULL,
       campaign_id uuid NULL,
       template_id uuid NULL,
       template_version integer NULL,
       channel text NOT NULL DEFAULT 'push'
         CONSTRAINT messages_channel_check CHECK (channel IN ${CHANNELS}),
       subscription_type text NULL
         CONSTRAINT messages_subscription_type_check CHECK (subscription_type IN ${SUBSCRIPTION_TYPES}),
       status text NOT NULL DEFAULT 'pending'
         CONSTRAINT messages_status_check
         CHECK (status IN ('pending', 'successful', 'received', 'converted', 'failed', 'errored', 'cancelled')),
       title text NULL,
       body text NULL,
       data jsonb NOT NULL DEFAULT '{}'::jsonb,
       options jsonb NOT NULL DEFAULT '{}'::jsonb,
       provider text NULL,
       provider_message_id text NULL,
       error_code text NULL,
       error_message text NULL,
       error_details jsonb NOT NULL DEFAULT '{}'::jsonb,
       attempts integer NOT NULL DEFAULT 0 CONSTRAINT messages_attempts_check CHECK (attempts >= 0),
       idempotency_key text NULL,
       resent_from_id uuid NULL,
       is_test boolean NOT NULL DEFAULT false,
       scheduled_at timestamptz NULL,
       sent_at timestamptz NULL,
       received_at timestamptz NULL,
       converted_at timestamptz NULL,
       failed_at timestamptz NULL,
       cancelled_at timestamptz NULL,
       created_at timestamptz NOT NULL DEFAULT now(),
       updated_at timestamptz NOT NULL DEFAULT now(),
       CONSTRAINT messages_subscription_fk FOREIGN KEY (application_id, subscription_id)
         REFERENCES subscriptions (application_id, id) ON DELETE SET NULL (subscription_id),
       CONSTRAINT messages_user_fk FOREIGN KEY (application_id, user_id)
         REFERENCES users (application_id, id) ON DELETE SET NULL (user_id),
       CONSTRAINT messages_campaign_fk FOREIGN KEY (application_id, campaign_id)
         REFERENCES message_campaigns (application_id, id) ON DELETE SET NULL (campaign_id)
     )`,
    // One message per (request key, recipient): a send to a user's N devices shares one key.
    `CREATE UNIQUE INDEX messages_idempotency_key
       ON messages (application_id, idempotency_key, subscription_id)
       WHERE idempotency_key IS NOT NULL`,
    `CREATE INDEX messages_application_id_created_at_idx ON messages (application_id, created_at DESC)`,
    `CREATE INDEX messages_application_id_status_created_at_idx ON messages (application_id, status, created_at)`,
    `CREATE INDEX messages_subscription_id_created_at_idx ON messages (subscription_id, created_at)`,
    `CREATE INDEX messages_campaign_id_status_idx ON messages (campaign_id, status)`,
    `CREATE INDEX messages_application_id_user_id_created_at_idx
       ON messages (application_id, user_id, created_at)
       WHERE user_id IS NOT NULL`,
    // system-wide reconciler scan for stuck pending messages (not tenant-scoped on purpose)
    `CREATE INDEX messages_pending_created_at_idx ON messages (created_at) WHERE status = 'pending'`,
    updatedAtTrigger("messages"),

    // ------------------------------------------------------------------ message_events
    `CREATE TABLE message_events (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
       event_type text NOT NULL,
       from_status text NULL,
       to_status text NULL,
       data jsonb NOT NULL DEFAULT '{}'::jsonb,
       created_at timestamptz NOT NULL DEFAULT now()
     )`,
    `CREATE INDEX message_events_message_id_created_at_idx ON message_events (message_id, created_at)`,
  ]);
}

/** Drops the messaging tables, dependents first, and the message_template_versions_immutable() trigger function. */
export async function down(knex: Knex): Promise<void> {
  await run(knex, [
    `DROP TABLE IF EXISTS message_events`,
    `DROP TABLE IF EXISTS messages`,
    `DROP TABLE IF EXISTS message_campaigns`,
    `DROP TABLE IF EXISTS message_template_versions`,
    `DROP FUNCTION IF EXISTS message_template_versions_immutable()`,
    `DROP TABLE IF EXISTS message_templates`,
  ]);
}
