import type { Knex } from "knex";
import { createIndexConcurrently } from "./20261202000100_subscriptions_audience_index";

/**
 * `GET /campaigns/:id/messages` pages a campaign's messages in id order, and no index gave that
 * order within a campaign: PostgreSQL either fetched and sorted every message of the campaign for
 * each page (a million for a large one) or walked the primary key from the oldest message of every
 * tenant until it had filled the page. `(campaign_id, id)` reads one page's rows and stops.
 * Partial: single messages (no campaign) are most rows and never listed this way.
 *
 * Built CONCURRENTLY (outside a transaction) so messages keeps taking writes while it builds.
 */
export const config = { transaction: false };

/** Builds messages_campaign_id_id_idx on (campaign_id, id) over campaign messages for paging them, concurrently. */
export async function up(knex: Knex): Promise<void> {
  await createIndexConcurrently(knex, "messages_campaign_id_id_idx", "ON messages (campaign_id, id) WHERE campaign_id IS NOT NULL");
}

/** Drops messages_campaign_id_id_idx concurrently. */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP INDEX CONCURRENTLY IF EXISTS messages_campaign_id_id_idx`);
}
