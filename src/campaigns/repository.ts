/**
 * Campaign data access shared by the API and the campaign activities.
 */
import type { Knex } from "knex";
import type { CampaignPushOptions } from "./content";
import type { RenderableTemplate } from "../templates/render";
import type { TargetingCriteria } from "./targeting";
import { MESSAGE_STATUSES, UNSENT_STATUSES, type MessageStatus } from "../messages/state-machine";
import { percent } from "../http/format";

/** Every campaign status (the `message_campaigns_status_check` constraint). */
export const CAMPAIGN_STATUSES = ["draft", "scheduled", "running", "paused", "completed", "cancelled", "failed"] as const;

/** A campaign status. */
export type CampaignStatus = (typeof CAMPAIGN_STATUSES)[number];

/**
 * A campaign status as the API speaks it (REF-001 §6.3): PostgreSQL keeps DESIGN-003's `running`
 * (docs/data-model.md), the API answers `in_progress`.
 */
export const API_CAMPAIGN_STATUSES = ["draft", "scheduled", "in_progress", "paused", "completed", "cancelled", "failed"] as const;

/** A campaign status in API responses. */
export type ApiCampaignStatus = (typeof API_CAMPAIGN_STATUSES)[number];

/** The API's name of a stored status: `running` → `in_progress`, the others as they are. */
export function apiCampaignStatus(status: CampaignStatus): ApiCampaignStatus {
  return status === "running" ? "in_progress" : status;
}

/**
 * The status a campaign's workflow acts on: a running campaign of a deactivated application is
 * held as if paused (no new batch; it goes on by itself within a status poll of reactivation),
 * since its owner's key can no longer pause or cancel it and an operator deactivates to stop it.
 */
export function statusToActOn(status: CampaignStatus, applicationActive: boolean): CampaignStatus {
  return status === "running" && !applicationActive ? "paused" : status;
}

/** Whether the application exists and is active (an operator has not deactivated it). */
export async function applicationIsActive(db: Knex, applicationId: string): Promise<boolean> {
  const app = (await db("applications").where("id", applicationId).first("is_active")) as { is_active: boolean } | undefined;
  return app?.is_active ?? false;
}

/** The stored status an API status filter means (`in_progress`, or its alias `running`, → `running`). */
export function storedCampaignStatus(status: ApiCampaignStatus | "running"): CampaignStatus {
  return status === "in_progress" ? "running" : status;
}

/** Statuses from which a campaign can still send (execute/cancel/pause act on these). */
export const ACTIVE_CAMPAIGN_STATUSES: readonly CampaignStatus[] = ["draft", "scheduled", "running", "paused"];

/** Statuses in which a campaign has ended: nothing changes it any more (a recurring one's schedule must not exist). */
export const ENDED_CAMPAIGN_STATUSES: readonly CampaignStatus[] = ["completed", "cancelled", "failed"];

/** Statuses of a campaign whose scheduled time has not started it yet. */
export const WAITING_CAMPAIGN_STATUSES: readonly CampaignStatus[] = ["draft", "scheduled"];

/** What every recipient of a campaign gets: rendered once at creation, so all batches send the same. */
export interface CampaignContent {
  title: string | null;
  body: string | null;
  data: Record<string, unknown>;
  /** `ttl_seconds` stays relative: each message's expiration is fixed when its batch creates it. */
  options: CampaignPushOptions;
  variables: Record<string, unknown>;
  /**
   * The template source when it references recipient fields (`{{tags.x}}`): title/body/data above
   * are then only a preview, and each message is rendered from this at batch creation.
   */
  personalized?: RenderableTemplate;
}

/** A recurring campaign's schedule (a Temporal Schedule; times in `timezone`). */
export interface CampaignSchedule {
  cron: string;
  timezone: string;
  start_at?: string;
  end_at?: string;
}

/** Timezone delivery: every recipient at `local_time` in their own timezone. */
export interface CampaignDelivery {
  mode: "timezone";
  /** "HH:MM" or "HH:MM:SS". */
  local_time: string;
  /** For subscriptions without a (valid) timezone; defaults to the application's timezone. */
  fallback_timezone: string;
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
  idempotency_key: string | null;
  /** Fingerprint of the create request that carried `idempotency_key`. */
  request_hash: string | null;
  /** Set on a recurring campaign (campaign_type "recurring"). */
  schedule: CampaignSchedule | null;
  delivery: CampaignDelivery | null;
  /** Set on one run of a recurring campaign. */
  parent_campaign_id: string | null;
  /** The schedule's workflow id of this run (unique per parent). */
  run_key: string | null;
  /** Recipients the audience had when the campaign started paging (null before that, and for campaigns started before it was recorded). */
  audience_size: number | null;
  /** Recurring: the Idempotency-Key of its last `execute`, and when that execute came. */
  execute_idempotency_key: string | null;
  execute_requested_at: Date | null;
  /** When the reconciler last looked at this campaign (it takes the least recently checked first). */
  reconciled_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

/** Which timezone delivery group an audience query is limited to (see timezones.ts). */
export interface AudienceGroup {
  /** subscriptions.timezone values in the group, as stored. */
  timezones: string[];
  /** Subscriptions without a timezone belong to this group. */
  includesUnset: boolean;
}

/**
 * A batch's slice of the audience: subscription ids in (after, last] (keyset bounds), within a
 * timezone delivery group if the campaign has one. The batch's messages are then addressed by
 * (campaign_id, campaign_batch).
 */
export interface BatchRange {
  campaignId: string;
  applicationId: string;
  batchNo: number;
  /** Exclusive lower bound; null for the first page. */
  after: string | null;
  /** Inclusive upper bound. */
  last: string;
  group?: AudienceGroup;
}

/** Restricts a `messages` query to one batch's messages (the (campaign_id, campaign_batch) index). */
export function inBatch(range: Pick<BatchRange, "campaignId" | "applicationId" | "batchNo">, alias = ""): (query: Knex.QueryBuilder) => void {
  const col = (c: string) => (alias ? `${alias}.${c}` : c);
  return (query) => {
    query.where(col("campaign_id"), range.campaignId).where(col("campaign_batch"), range.batchNo).where(col("application_id"), range.applicationId);
  };
}

/**
 * The batch numbers of a campaign that still hold unsent (pending or errored) messages, and with
 * `alsoCancelled` those holding cancelled ones (never sent either, and owed a refund by a batch that
 * will not settle). Messages of releases before batches were numbered have none; they cannot be
 * told apart and are left out.
 */
export async function batchesWithUnsentMessages(db: Knex | Knex.Transaction, campaign: { campaignId: string; applicationId: string }, options: { alsoCancelled?: boolean } = {}): Promise<number[]> {
  return (await db("messages")
    .where({ application_id: campaign.applicationId, campaign_id: campaign.campaignId })
    .whereIn("status", options.alsoCancelled ? [...UNSENT_STATUSES, "cancelled"] : UNSENT_STATUSES)
    .whereNotNull("campaign_batch")
    .distinct("campaign_batch")
    .pluck("campaign_batch")) as number[];
}

/** Message counts of a campaign by status (campaign_message_counts, kept by triggers on messages). */
export type CampaignCounts = {
  total: number;
  /** Of the failed ones, those the provider had accepted (no receipt before the receipt timeout). */
  failed_after_sent: number;
} & Record<MessageStatus, number>;

/** Counts a campaign's messages by status. */
export async function campaignCounts(db: Knex | Knex.Transaction, campaignId: string): Promise<CampaignCounts> {
  return (await campaignCountsOf(db, [campaignId])).get(campaignId)!;
}

/** No message in any status. */
function zeroCounts(): CampaignCounts {
  return { total: 0, failed_after_sent: 0, pending: 0, errored: 0, successful: 0, received: 0, converted: 0, failed: 0, cancelled: 0 };
}

/**
 * Sums count shards per campaign (and per subscription type when asked). A recurring campaign
 * sends nothing itself: its counts are its runs' totals, which the message triggers keep in
 * recurring_campaign_counts as the runs change (each run's own counts stay under the run's id).
 * A campaign has rows in only one of the two tables.
 */
async function summedCounts(db: Knex | Knex.Transaction, campaignIds: readonly string[], bySubscriptionType: boolean) {
  const counted = ["failed_after_sent", ...MESSAGE_STATUSES];
  // bigint: a recurring campaign's lifetime totals pass 2^31 (a daily run to 6 million devices does in a year).
  const columns = counted.map((column) => `sum(c.${column})::bigint AS ${column}`).join(", ");
  const type = bySubscriptionType ? ", c.subscription_type" : "";
  const rowsOf = (table: string) => `SELECT campaign_id, subscription_type, ${counted.join(", ")} FROM ${table} WHERE campaign_id = ANY(?::uuid[])`;
  const result = await db.raw(
    `SELECT c.campaign_id${type}, ${columns}
       FROM (${rowsOf("campaign_message_counts")} UNION ALL ${rowsOf("recurring_campaign_counts")}) c
      GROUP BY c.campaign_id${type}`,
    [[...campaignIds], [...campaignIds]],
  );
  return (result.rows as Array<{ campaign_id: string; subscription_type?: string; failed_after_sent: string } & Record<MessageStatus, string>>).map((row) => {
    const counts = zeroCounts();
    counts.failed_after_sent = Number(row.failed_after_sent);
    for (const status of MESSAGE_STATUSES) {
      counts[status] = Number(row[status]);
      counts.total += counts[status];
    }
    return { campaignId: row.campaign_id, subscriptionType: row.subscription_type, counts };
  });
}

/**
 * Counts the messages of several campaigns by status in one query (a page of campaigns or runs):
 * the sum of each campaign's count shards, exact as of the last committed change; a recurring
 * campaign's are its runs' totals.
 */
export async function campaignCountsOf(db: Knex | Knex.Transaction, campaignIds: readonly string[]): Promise<Map<string, CampaignCounts>> {
  const counts = new Map<string, CampaignCounts>(campaignIds.map((id) => [id, zeroCounts()]));
  if (campaignIds.length === 0) return counts;
  for (const row of await summedCounts(db, campaignIds, false)) counts.set(row.campaignId, row.counts);
  return counts;
}

/** The counts of several parts added up (a campaign's per-type counts into its totals). */
export function sumCounts(parts: Iterable<CampaignCounts>): CampaignCounts {
  const sum = zeroCounts();
  for (const part of parts) {
    for (const key of Object.keys(sum) as Array<keyof CampaignCounts>) sum[key] += part[key];
  }
  return sum;
}

/** A campaign's message counts per subscription type (the types it has messages of; a recurring campaign's runs summed). */
export async function campaignCountsBySubscriptionType(db: Knex | Knex.Transaction, campaignId: string): Promise<Map<string, CampaignCounts>> {
  const rows = await summedCounts(db, [campaignId], true);
  return new Map(rows.filter((row) => row.counts.total > 0).map((row) => [row.subscriptionType ?? "", row.counts]));
}

/** A campaign's counts as the API reports them (see {@link reportedCounts}). */
export interface ReportedCounts {
  total: number;
  successful: number;
  received: number;
  converted: number;
  failed: number;
  cancelled: number;
  pending: number;
}

/**
 * Counts as the API reports them (REF-001 §6.5): `successful` = accepted by the provider
 * (successful, received or converted now, or failed later for want of a receipt), `failed` = never
 * accepted, `received` includes converted. So successful − received is what the devices have not
 * confirmed (yet, or before the receipt timeout), and the delivery rate does not fall when the
 * receipt window closes.
 */
export function reportedCounts(n: CampaignCounts): ReportedCounts {
  return {
    total: n.total,
    successful: n.successful + n.received + n.converted + n.failed_after_sent,
    received: n.received + n.converted,
    converted: n.converted,
    failed: n.failed - n.failed_after_sent,
    cancelled: n.cancelled,
    pending: n.pending + n.errored,
  };
}

/**
 * SEQ-003 §5.1 rates, in percent, from a campaign's counts: delivery = accepted of attempted
 * (successful + never-accepted failures + errored: messages waiting to be sent, and cancelled
 * ones, were never attempted and do not lower it), receive = received of accepted, conversion =
 * converted of received. The same rule as `/analytics/messages`.
 */
export function campaignRates(counts: CampaignCounts): { delivery_rate: number; receive_rate: number; conversion_rate: number } {
  const n = reportedCounts(counts);
  const attempted = n.successful + n.failed + counts.errored;
  return { delivery_rate: percent(n.successful, attempted), receive_rate: percent(n.received, n.successful), conversion_rate: percent(n.converted, n.received) };
}

/**
 * Recipients not sent yet (REF-001 §6.5 `remaining`): the unsent messages (pending or errored), plus
 * the recipients whose messages the batches have not created yet — the audience size recorded when
 * paging started minus the messages created so far, clamped at 0 (subscriptions that left the
 * audience meanwhile never get a message). A finished campaign creates none any more, and one not
 * started yet has no recorded audience: neither adds any.
 */
export function remainingRecipients(campaign: Pick<CampaignRow, "status" | "audience_size">, counts: ReportedCounts): number {
  const notCreated = campaign.audience_size === null || ENDED_CAMPAIGN_STATUSES.includes(campaign.status) ? 0 : Math.max(0, campaign.audience_size - counts.total);
  return counts.pending + notCreated;
}
