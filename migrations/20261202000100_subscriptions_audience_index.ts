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

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE INDEX CONCURRENTLY IF NOT EXISTS subscriptions_audience_idx
    ON subscriptions (application_id, id) WHERE subscription_status > 0 AND archived_at IS NULL`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS subscriptions_audience_idx`);
}
