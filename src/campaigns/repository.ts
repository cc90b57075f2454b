/**
 * Campaign data access shared by the API and the campaign activities.
 */
import type { Knex } from "knex";
import type { StoredPushOptions } from "../messages/push-options";
import type { TargetingCriteria } from "./targeting";

/** Every campaign status (the `message_campaigns_status_check` constraint). */
export const CAMPAIGN_STATUSES = ["draft", "scheduled", "running", "paused", "completed", "cancelled", "failed"] as const;

/** A campaign status. */
export type CampaignStatus = (typeof CAMPAIGN_STATUSES)[number];

/** Statuses from which a campaign can still send (execute/cancel/pause act on these). */
export const ACTIVE_CAMPAIGN_STATUSES: readonly CampaignStatus[] = ["draft", "scheduled", "running", "paused"];

/** What every recipient of a campaign gets: rendered once at creation, so all batches send the same. */
export interface CampaignContent {
  title: string | null;
  body: string | null;
  data: Record<string, unknown>;
  options: StoredPushOptions;
  variables: Record<string, unknown>;
}

/** A `message_campaigns` row. */
export interface CampaignRow {
  id: string;
  application_id: string;
  template_id: string | null;
  template_version: number | null;
  name: string;
  description: string | null;
  campaign_type: string;
  content: CampaignContent;
  targeting_criteria: TargetingCriteria;
  status: CampaignStatus;
  throttle_per_minute: number | null;
  scheduled_at: Date | null;
  started_at: Date | null;
  completed_at: Date | null;
  cancelled_at: Date | null;
  workflow_id: string | null;
  created_by: string | null;
  error_message: string | null;
  total_recipients: number;
  sent_count: number;
  failed_count: number;
  received_count: number;
  converted_count: number;
  skipped_count: number;
  idempotency_key: string | null;
  created_at: Date;
  updated_at: Date;
}

/** A batch's slice of the audience: subscription ids in (after, last], keyset bounds. */
export interface BatchRange {
  campaignId: string;
  applicationId: string;
  batchNo: number;
  /** Exclusive lower bound; null for the first page. */
  after: string | null;
  /** Inclusive upper bound. */
  last: string;
}

/** Restricts a `messages` query to one batch (served by the unique (campaign_id, subscription_id) index). */
export function inBatch(range: BatchRange, alias = ""): (query: Knex.QueryBuilder) => void {
  const col = (c: string) => (alias ? `${alias}.${c}` : c);
  return (query) => {
    query.where(col("campaign_id"), range.campaignId).where(col("application_id"), range.applicationId).where(col("subscription_id"), "<=", range.last);
    if (range.after) query.where(col("subscription_id"), ">", range.after);
  };
}

/** Message counts of a campaign by status, from the (campaign_id, status) index. */
export interface CampaignCounts {
  total: number;
  pending: number;
  errored: number;
  successful: number;
  received: number;
  converted: number;
  failed: number;
  cancelled: number;
}

/** Counts a campaign's messages by status. */
export async function campaignCounts(db: Knex | Knex.Transaction, campaignId: string): Promise<CampaignCounts> {
  const rows = (await db("messages").where("campaign_id", campaignId).groupBy("status").select("status", db.raw("count(*)::int as n"))) as Array<{ status: string; n: number }>;
  const counts: CampaignCounts = { total: 0, pending: 0, errored: 0, successful: 0, received: 0, converted: 0, failed: 0, cancelled: 0 };
  for (const { status, n } of rows) {
    counts.total += n;
    if (status in counts) counts[status as keyof CampaignCounts] += n;
  }
  return counts;
}

/**
 * Writes the campaign's counter columns from its messages. `sent_count` counts messages the
 * provider accepted (successful, received or converted now), matching the stats endpoint.
 */
export async function refreshCampaignCounters(db: Knex | Knex.Transaction, campaignId: string): Promise<CampaignCounts> {
  const counts = await campaignCounts(db, campaignId);
  await db("message_campaigns")
    .where("id", campaignId)
    .update({
      total_recipients: counts.total,
      sent_count: counts.successful + counts.received + counts.converted,
      failed_count: counts.failed,
      received_count: counts.received + counts.converted,
      converted_count: counts.converted,
      skipped_count: counts.cancelled,
    });
  return counts;
}
