import type { Knex } from "knex";

/**
 * An index in the order campaigns page their audience: an application's deliverable subscriptions
 * by id. Audience pages are `… WHERE application_id = ? AND id > cursor ORDER BY id LIMIT n`.
 * `subscriptions_active_idx` is ordered by (application_id, subscription_type, id), so for the
 * usual audience of both push types PostgreSQL read every remaining subscription of both types
 * and sorted them for each page whenever it chose that index — measured on a freshly imported
 * 100,000-subscription audience (no statistics yet): 25–70 ms a page, a cost that grows with the
 * audience (quadratic over a whole campaign), against under 1 ms a page along this index. It also
 * serves a small application among large ones, where walking the primary key would read
 * everybody else's subscriptions to find its own.
 *
 * Built CONCURRENTLY (outside a transaction) so a large subscriptions table keeps taking
 * registrations while it builds; a rolling deploy's previous release ignores it.
 */
export const config = { transaction: false };

/**
 * CREATE INDEX CONCURRENTLY that also recovers from an earlier failed build (shared with later
 * migrations). A concurrent build that was cancelled, timed out or lost its process leaves an
 * INVALID index of that name: `IF NOT EXISTS` would keep it, the migration would be recorded as
 * applied, and the planner would never use it. An invalid one is dropped and built again.
 */
export async function createIndexConcurrently(knex: Knex, name: string, definition: string): Promise<void> {
  const { rows } = (await knex.raw(
    `SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE c.relname = ? AND c.relnamespace = current_schema()::regnamespace`,
    [name],
  )) as { rows: Array<{ indisvalid: boolean }> };
  if (rows[0]?.indisvalid === true) return;
  if (rows.length > 0) await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
  await knex.raw(`CREATE INDEX CONCURRENTLY ${name} ${definition}`);
}

/** Builds subscriptions_audience_idx on (application_id, id) over deliverable, unarchived subscriptions, concurrently. */
export async function up(knex: Knex): Promise<void> {
  await createIndexConcurrently(knex, "subscriptions_audience_idx", "ON subscriptions (application_id, id) WHERE subscription_status > 0 AND archived_at IS NULL");
}

/** Drops subscriptions_audience_idx concurrently. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS subscriptions_audience_idx`);
}
