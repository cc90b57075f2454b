import type { Knex } from "knex";

/**
 * Where the reconciler's look at individually sent messages stopped, per message status (and per
 * application when a pass is limited to one). A pass used to take the `limit` oldest pending (then
 * errored) messages every time: behind more than `limit` messages with a live workflow — a burst
 * Temporal is still working through, a provider outage's retrying backlog — a message whose
 * workflow never started stayed pending until that backlog went out. Now each pass goes on from here and starts
 * over at the oldest after the last page, so every message is looked at within
 * ceil(backlog / limit) + 1 passes. The position is the last message's (created_at, id), its created_at
 * carried as text so the microseconds survive.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE TABLE reconciler_cursors (
    name text PRIMARY KEY,
    after_created_at timestamptz NOT NULL,
    after_id uuid NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
  )`);
}

/** Drops the reconciler_cursors table. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP TABLE IF EXISTS reconciler_cursors`);
}
