import type { Knex } from "knex";

/**
 * Operational tables: rate_limit_counters (shared fixed-window store) and
 * erasure_requests (GDPR right-to-erasure tracking).
 */

async function run(knex: Knex, statements: readonly string[]): Promise<void> {
  for (const sql of statements) {
    await knex.raw(sql);
  }
}

/** Creates the UNLOGGED rate_limit_counters table and erasure_requests, with their indexes and updated_at trigger. */
export async function up(knex: Knex): Promise<void> {
  await run(knex, [
    // ------------------------------------------------------------------ rate_limit_counters
    // UNLOGGED: counters are high-churn and disposable. They skip WAL (cheaper writes) and are
    // emptied after a crash and absent on physical replicas, which at worst resets the current
    // window. key is opaque to the database (e.g. 'api:<application_id>:<route>').
    `CREATE UNLOGGED TABLE rate_limit_counters (
       key text NOT NULL,
       window_start timestamptz NOT NULL,
       hits integer NOT NULL DEFAULT 0,
       PRIMARY KEY (key, window_start)
     )`,
    `CREATE INDEX rate_limit_counters_window_start_idx ON rate_limit_counters (window_start)`,

    // ------------------------------------------------------------------ erasure_requests
    // user_id is a soft reference: the user row is deleted by the erasure itself.
    `CREATE TABLE erasure_requests (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
       external_id text NOT NULL,
       user_id uuid NULL,
       status text NOT NULL DEFAULT 'pending'
         CONSTRAINT erasure_requests_status_check CHECK (status IN ('pending', 'running', 'completed', 'failed')),
       workflow_id text NULL,
       requested_at timestamptz NOT NULL DEFAULT now(),
       completed_at timestamptz NULL,
       result jsonb NOT NULL DEFAULT '{}'::jsonb,
       updated_at timestamptz NOT NULL DEFAULT now()
     )`,
    `CREATE INDEX erasure_requests_application_id_requested_at_idx
       ON erasure_requests (application_id, requested_at DESC)`,
    `CREATE INDEX erasure_requests_application_id_external_id_idx
       ON erasure_requests (application_id, external_id)`,
    `CREATE TRIGGER erasure_requests_set_updated_at BEFORE UPDATE ON erasure_requests
       FOR EACH ROW EXECUTE FUNCTION set_updated_at()`,
  ]);
}

/** Drops erasure_requests and rate_limit_counters. */
export async function down(knex: Knex): Promise<void> {
  await run(knex, [`DROP TABLE IF EXISTS erasure_requests`, `DROP TABLE IF EXISTS rate_limit_counters`]);
}
