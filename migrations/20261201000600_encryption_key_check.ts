import type { Knex } from "knex";

/**
 * Two changes:
 *
 * - `encryption_key_check`: one row holding a fingerprint of the AUTOMATA_ENCRYPTION_KEY this
 *   database's device tokens and provider credentials are sealed with (an HKDF output of the key,
 *   from which the key cannot be recovered). Every API and worker compares its own key's
 *   fingerprint at start-up and refuses to run on a mismatch: a worker with another key would fail
 *   each message it handles with `token_unreadable` (permanent), and an API with another key would
 *   seal tokens no other process can open. The first process to start records it.
 * - `message_campaigns` keeps its `updated_at` when the reconciler only stamps `reconciled_at`:
 *   that stamp is bookkeeping, and moving `updated_at` on every pass made every active campaign
 *   look freshly changed.
 *
 * The release before this one neither reads the table nor stamps differently, so it runs beside it.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE TABLE encryption_key_check (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT encryption_key_check_singleton CHECK (singleton),
    fingerprint text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  )`);
  await knex.raw(`DROP TRIGGER IF EXISTS message_campaigns_set_updated_at ON message_campaigns`);
  await knex.raw(`CREATE TRIGGER message_campaigns_set_updated_at BEFORE UPDATE ON message_campaigns
    FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'reconciled_at' - 'updated_at') IS DISTINCT FROM (to_jsonb(NEW) - 'reconciled_at' - 'updated_at'))
    EXECUTE FUNCTION set_updated_at()`);
}

/** Restores the unconditional message_campaigns updated_at trigger and drops encryption_key_check. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TRIGGER IF EXISTS message_campaigns_set_updated_at ON message_campaigns`);
  await knex.raw(`CREATE TRIGGER message_campaigns_set_updated_at BEFORE UPDATE ON message_campaigns
    FOR EACH ROW EXECUTE FUNCTION set_updated_at()`);
  await knex.raw(`DROP TABLE IF EXISTS encryption_key_check`);
}
