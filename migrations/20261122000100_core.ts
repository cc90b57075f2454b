import type { Knex } from "knex";

/**
 * Core tenant tables: applications, api_keys, users, subscriptions,
 * subscription_events, plus the shared set_updated_at() trigger function.
 *
 * Conventions (see docs/data-model.md):
 * - uuid primary keys; the application supplies UUIDv7 values, gen_random_uuid() is a fallback.
 * - every tenant-owned table carries application_id (FK, ON DELETE CASCADE) and its indexes
 *   lead with application_id.
 * - references between tenant-owned rows are composite (application_id, x_id) foreign keys,
 *   so a row can never point at another tenant's row. "ON DELETE SET NULL (col)" needs
 *   PostgreSQL 15+.
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

/** Creates set_updated_at() and the applications, api_keys, users, subscriptions and subscription_events tables with their indexes. */
export async function up(knex: Knex): Promise<void> {
  await run(knex, [
    `CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
       LANGUAGE plpgsql AS $$
     BEGIN
       NEW.updated_at := now();
       RETURN NEW;
     END;
     $$`,

    // ------------------------------------------------------------------ applications
    `CREATE TABLE applications (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       name text NOT NULL CONSTRAINT applications_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
       is_active boolean NOT NULL DEFAULT true,
       settings jsonb NOT NULL DEFAULT '{}'::jsonb
         CONSTRAINT applications_settings_object CHECK (jsonb_typeof(settings) = 'object'),
       provider_credentials_ciphertext text NULL,
       rate_limit_tier text NOT NULL DEFAULT 'basic'
         CONSTRAINT applications_rate_limit_tier_check CHECK (rate_limit_tier IN ('basic', 'premium', 'enterprise')),
       timezone text NOT NULL DEFAULT 'UTC',
       created_at timestamptz NOT NULL DEFAULT now(),
       updated_at timestamptz NOT NULL DEFAULT now()
     )`,
    `CREATE INDEX applications_name_idx ON applications (name)`,
    updatedAtTrigger("applications"),

    // ------------------------------------------------------------------ api_keys
    `CREATE TABLE api_keys (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
       prefix text NOT NULL CONSTRAINT api_keys_prefix_key UNIQUE,
       key_hash text NOT NULL,
       name text NULL,
       created_at timestamptz NOT NULL DEFAULT now(),
       last_used_at timestamptz NULL,
       expires_at timestamptz NULL,
       revoked_at timestamptz NULL
     )`,
    `CREATE INDEX api_keys_application_id_idx ON api_keys (application_id)`,

    // ------------------------------------------------------------------ users
    `CREATE TABLE users (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
       external_id text NOT NULL CONSTRAINT users_external_id_length CHECK (char_length(external_id) BETWEEN 1 AND 255),
       properties jsonb NOT NULL DEFAULT '{}'::jsonb
         CONSTRAINT users_properties_object CHECK (jsonb_typeof(properties) = 'object'),
       last_active_at timestamptz NULL,
       archived_at timestamptz NULL,
       created_at timestamptz NOT NULL DEFAULT now(),
       updated_at timestamptz NOT NULL DEFAULT now(),
       CONSTRAINT users_application_id_external_id_key UNIQUE (application_id, external_id),
       -- target of composite (application_id, user_id) foreign keys (cross-tenant integrity)
       CONSTRAINT users_application_id_id_key UNIQUE (application_id, id)
     )`,
    `CREATE INDEX users_application_id_last_active_at_idx ON users (application_id, last_active_at)`,
    updatedAtTrigger("users"),

    // ------------------------------------------------------------------ subscriptions
    // subscription_status follows REF-002: > 0 subscribed; 0 / -99 never subscribed;
    // -2 unsubscribed by user; -31 disabled via API; -98 pending double opt-in;
    // -3..-24 push errors; -40..-49 email; -50..-59 SMS; -60..-69 KakaoTalk; -70..-79 in-app.
    `CREATE TABLE subscriptions (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
       user_id uuid NULL,
       subscription_type text NOT NULL
         CONSTRAINT subscriptions_subscription_type_check
         CHECK (subscription_type IN ('iOSPush', 'AndroidPush', 'Email', 'SMS', 'KakaoTalk', 'InAppMessage')),
       token_ciphertext text NULL,
       token_hash text NULL,
       subscription_status smallint NOT NULL DEFAULT 1
         CONSTRAINT subscriptions_subscription_status_check CHECK (subscription_status >= -99),
       subscribed_at timestamptz NULL,
       unsubscribed_at timestamptz NULL,
       tags jsonb NOT NULL DEFAULT '{}'::jsonb
         CONSTRAINT subscriptions_tags_object CHECK (jsonb_typeof(tags) = 'object'),
       timezone text NULL,
       country text NULL,
       language text NULL,
       device_model text NULL,
       device_os text NULL,
       os_version text NULL,
       app_version text NULL,
       sdk_version text NULL,
       test_type smallint NULL,
       last_active_at timestamptz NULL,
       total_messages_received integer NOT NULL DEFAULT 0
         CONSTRAINT subscriptions_total_messages_received_check CHECK (total_messages_received >= 0),
       total_messages_converted integer NOT NULL DEFAULT 0
         CONSTRAINT subscriptions_total_messages_converted_check CHECK (total_messages_converted >= 0),
       archived_at timestamptz NULL,
       created_at timestamptz NOT NULL DEFAULT now(),
       updated_at timestamptz NOT NULL DEFAULT now(),
       -- an archived subscription must not be deliverable (keeps the active partial index honest)
       CONSTRAINT subscriptions_archived_inactive CHECK (archived_at IS NULL OR subscription_status <= 0),
       CONSTRAINT subscriptions_application_id_id_key UNIQUE (application_id, id),
       CONSTRAINT subscriptions_user_fk FOREIGN KEY (application_id, user_id)
         REFERENCES users (application_id, id) ON DELETE SET NULL (user_id)
     )`,
    `CREATE UNIQUE INDEX subscriptions_token_hash_key
       ON subscriptions (application_id, subscription_type, token_hash)
       WHERE token_hash IS NOT NULL`,
    `CREATE INDEX subscriptions_tags_gin_idx ON subscriptions USING gin (tags jsonb_path_ops)`,
    `CREATE INDEX subscriptions_active_idx
       ON subscriptions (application_id, subscription_type, id)
       WHERE subscription_status > 0`,
    `CREATE INDEX subscriptions_application_id_user_id_idx ON subscriptions (application_id, user_id)`,
    updatedAtTrigger("subscriptions"),

    // ------------------------------------------------------------------ subscription_events
    `CREATE TABLE subscription_events (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
       subscription_id uuid NOT NULL,
       user_id uuid NULL,
       event_type text NOT NULL,
       from_status smallint NULL,
       to_status smallint NULL,
       source text NULL,
       reason text NULL,
       data jsonb NOT NULL DEFAULT '{}'::jsonb,
       created_at timestamptz NOT NULL DEFAULT now(),
       CONSTRAINT subscription_events_subscription_fk FOREIGN KEY (application_id, subscription_id)
         REFERENCES subscriptions (application_id, id) ON DELETE CASCADE,
       CONSTRAINT subscription_events_user_fk FOREIGN KEY (application_id, user_id)
         REFERENCES users (application_id, id) ON DELETE SET NULL (user_id)
     )`,
    `CREATE INDEX subscription_events_subscription_id_created_at_idx
       ON subscription_events (subscription_id, created_at)`,
    `CREATE INDEX subscription_events_application_id_created_at_idx
       ON subscription_events (application_id, created_at)`,
    `CREATE INDEX subscription_events_application_id_user_id_idx
       ON subscription_events (application_id, user_id)
       WHERE user_id IS NOT NULL`,
  ]);
}

/** Drops the five core tables, dependents first, and the set_updated_at() trigger function. */
export async function down(knex: Knex): Promise<void> {
  await run(knex, [
    `DROP TABLE IF EXISTS subscription_events`,
    `DROP TABLE IF EXISTS subscriptions`,
    `DROP TABLE IF EXISTS users`,
    `DROP TABLE IF EXISTS api_keys`,
    `DROP TABLE IF EXISTS applications`,
    `DROP FUNCTION IF EXISTS set_updated_at()`,
  ]);
}
