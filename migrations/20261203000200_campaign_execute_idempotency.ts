import type { Knex } from "knex";

/**
 * `POST /campaigns/:id/execute` of a recurring campaign fires a run now. Retried after a lost
 * response (its run may have finished within seconds), it fired a second run and every device got
 * the push twice. The campaign keeps the Idempotency-Key of its last execute and when it came: a
 * repeat of that key answers the run it asked for (see executeRecurring).
 *
 * Nullable columns without a default: a catalog change only, no table rewrite.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`SET LOCAL lock_timeout = '10s'`);
  await knex.raw(`ALTER TABLE message_campaigns ADD COLUMN execute_idempotency_key text NULL, ADD COLUMN execute_requested_at timestamptz NULL`);
}

/** Drops message_campaigns' execute_idempotency_key and execute_requested_at columns. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`SET LOCAL lock_timeout = '10s'`);
  await knex.raw(`ALTER TABLE message_campaigns DROP COLUMN execute_idempotency_key, DROP COLUMN execute_requested_at`);
}
