/**
 * Analytics reads. Message and subscription figures come from the per-day rollups maintained by
 * triggers (migrations/20261122005000_analytics.ts), so their cost is bounded by days × keys.
 * Two reads touch base tables, both bounded: engagement (distinct recipients and latency medians
 * cannot be summed from daily counters) scans the application's messages created in the range via
 * messages_application_id_created_at_idx; devices groups the active push subscriptions through the
 * subscriptions_active_idx partial index.
 */
import type { Knex } from "knex";
import type { DayRange } from "./schemas";
import { addDays } from "./schemas";
import { percent } from "../http/format";

const NIL_UUID = "00000000-0000-0000-0000-000000000000";

/** Rollup counters of message_stats_daily, summed. */
export interface MessageCounters {
  created: number;
  successful: number;
  received: number;
  converted: number;
  failed: number;
  cancelled: number;
  errored: number;
  pending: number;
  /** Of `failed`, those the provider had accepted first (no receipt before the receipt timeout): also in `successful`. */
  failed_after_sent: number;
}

const COUNTER_NAMES = ["created", "successful", "received", "converted", "failed", "cancelled", "errored", "pending", "failed_after_sent"] as const;

const sums = COUNTER_NAMES.map((c) => `coalesce(sum(${c}), 0)::bigint AS ${c}`).join(", ");

function toCounters(row: Record<string, unknown> | undefined): MessageCounters {
  const out = {} as MessageCounters;
  for (const name of COUNTER_NAMES) out[name] = Number(row?.[name] ?? 0);
  return out;
}


/**
 * REF-001 §7.1 figures with SEQ-003 §5.1 rates. The denominator successful + failed + errored counts
 * every attempted message once: a message that was sent and then failed (receipt timeout) is in
 * both `successful` and `failed`, so it is taken out of the failures there.
 */
export function messageFigures(c: MessageCounters): Record<string, number> {
  const attempted = c.successful + (c.failed - c.failed_after_sent) + c.errored;
  return {
    total_sent: c.created,
    successful: c.successful,
    failed: c.failed,
    failed_after_sent: c.failed_after_sent,
    errored: c.errored,
    received: c.received,
    converted: c.converted,
    cancelled: c.cancelled,
    pending: c.pending,
    delivery_rate: percent(c.successful, attempted),
    receive_rate: percent(c.received, c.successful),
    conversion_rate: percent(c.converted, c.received),
    overall_conversion_rate: percent(c.converted, attempted),
  };
}

/** Bucket unit of a series. */
export type Bucket = "day" | "week" | "month";

/**
 * Zero-filled series of bucket starts covering the range. Week buckets start on ISO Monday and
 * month buckets on the 1st, so the first bucket may begin before `fromDay` (its figures still only
 * count days inside the range).
 */
function bucketSeries(bucket: Bucket): string {
  return `SELECT to_char(b, 'YYYY-MM-DD') AS date, b::date AS start, (b + interval '1 ${bucket}')::date AS next
            FROM generate_series(date_trunc('${bucket}', ?::timestamp), ?::timestamp, interval '1 ${bucket}') AS b`;
}

/** Message rollup sums for one application and range, per channel and per bucket. */
export async function messageStats(
  db: Knex,
  applicationId: string,
  range: DayRange,
  channel: string | undefined,
  bucket: Bucket,
): Promise<{ byChannel: Array<{ channel: string } & MessageCounters>; series: Array<{ date: string } & MessageCounters> }> {
  const filter = `application_id = ? AND day BETWEEN ? AND ?${channel ? " AND channel = ?" : ""}`;
  const bindings = [applicationId, range.fromDay, range.toDay, ...(channel ? [channel] : [])];
  const byChannel = await db.raw(`SELECT channel, ${sums} FROM message_stats_daily WHERE ${filter} GROUP BY channel ORDER BY channel`, bindings);
  const series = await db.raw(
    `WITH buckets AS (${bucketSeries(bucket)}),
          days AS (SELECT day, ${sums} FROM message_stats_daily WHERE ${filter} GROUP BY day)
     SELECT buckets.date, ${COUNTER_NAMES.map((c) => `coalesce(sum(days.${c}), 0)::bigint AS ${c}`).join(", ")}
       FROM buckets LEFT JOIN days ON days.day >= buckets.start AND days.day < buckets.next
      GROUP BY buckets.date ORDER BY buckets.date`,
    [range.fromDay, range.toDay, ...bindings],
  );
  return {
    byChannel: (byChannel.rows as Array<Record<string, unknown>>).map((r) => ({ channel: String(r.channel), ...toCounters(r) })),
    series: (series.rows as Array<Record<string, unknown>>).map((r) => ({ date: String(r.date), ...toCounters(r) })),
  };
}

/** DESIGN-003 channel of a subscription type. */
export const CHANNEL_OF_SUBSCRIPTION_TYPE: Record<string, string> = {
  iOSPush: "push",
  AndroidPush: "push",
  Email: "email",
  SMS: "sms",
  KakaoTalk: "kakao_talk",
  InAppMessage: "in_app",
};

/** Subscription changes of one key. */
export interface SubscriptionChanges {
  new_subscriptions: number;
  resubscribed: number;
  unsubscribed: number;
}

/** Active subscriptions now, per subscription type (an index-only count on subscriptions_active_idx). */
export async function activeByType(db: Knex, applicationId: string): Promise<Map<string, number>> {
  const rows = await db("subscriptions")
    .where("application_id", applicationId)
    .where("subscription_status", ">", 0)
    .groupBy("subscription_type")
    .select<Array<{ subscription_type: string; count: string }>>("subscription_type", db.raw("count(*) AS count"));
  return new Map(rows.map((r) => [r.subscription_type, Number(r.count)]));
}

/** Subscription rollup sums per type, and per bucket and type. */
export async function subscriptionChanges(
  db: Knex,
  applicationId: string,
  range: DayRange,
  bucket: Bucket,
): Promise<{ byType: Map<string, SubscriptionChanges>; series: Array<{ date: string; subscription_type: string | null } & SubscriptionChanges> }> {
  const cols = `coalesce(sum(new_subscriptions), 0)::bigint AS new_subscriptions, coalesce(sum(resubscribed), 0)::bigint AS resubscribed,
                coalesce(sum(unsubscribed), 0)::bigint AS unsubscribed`;
  const filter = `application_id = ? AND day BETWEEN ? AND ?`;
  const bindings = [applicationId, range.fromDay, range.toDay];
  const byType = await db.raw(`SELECT subscription_type, ${cols} FROM subscription_stats_daily WHERE ${filter} GROUP BY subscription_type`, bindings);
  // One row per (bucket, type); buckets without changes appear once with a null type.
  const series = await db.raw(
    `WITH buckets AS (${bucketSeries(bucket)})
     SELECT buckets.date, s.subscription_type, coalesce(sum(s.new_subscriptions), 0)::bigint AS new_subscriptions,
            coalesce(sum(s.resubscribed), 0)::bigint AS resubscribed, coalesce(sum(s.unsubscribed), 0)::bigint AS unsubscribed
       FROM buckets LEFT JOIN subscription_stats_daily s
         ON s.application_id = ? AND s.day BETWEEN ? AND ? AND s.day >= buckets.start AND s.day < buckets.next
      GROUP BY buckets.date, s.subscription_type ORDER BY buckets.date`,
    [range.fromDay, range.toDay, ...bindings],
  );
  const changes = (r: Record<string, unknown>): SubscriptionChanges => ({
    new_subscriptions: Number(r.new_subscriptions),
    resubscribed: Number(r.resubscribed),
    unsubscribed: Number(r.unsubscribed),
  });
  return {
    byType: new Map((byType.rows as Array<Record<string, unknown>>).map((r) => [String(r.subscription_type), changes(r)])),
    series: (series.rows as Array<Record<string, unknown>>).map((r) => ({
      date: String(r.date),
      subscription_type: r.subscription_type === null ? null : String(r.subscription_type),
      ...changes(r),
    })),
  };
}

/** Engagement figures of one recipient group. */
export interface EngagementFigures {
  total_users: number;
  active_users: number;
  engagement_rate: number;
  average_response_time: number | null;
  median_time_to_receive: number | null;
  median_time_to_convert: number | null;
}

// A step the API fills in for an SDK report (a conversion with no receipt before it, as iOS apps
// without a notification service extension send; a receipt for a message whose send result was
// lost) is stamped in the same transaction as the report, so its timestamp equals the next one:
// received_at = converted_at, sent_at = received_at. Two separate reports never share now(). Such
// a pair measures nothing and is left out of the latencies (it read as 0 s and halved them).
const ENGAGEMENT_SELECT = `count(DISTINCT m.subscription_id) AS total_users,
  count(DISTINCT m.subscription_id) FILTER (WHERE m.converted_at IS NOT NULL) AS active_users,
  avg(extract(epoch FROM m.converted_at - m.received_at)) FILTER (WHERE m.converted_at > m.received_at) AS average_response_time,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM m.received_at - m.sent_at)) FILTER (WHERE m.received_at > m.sent_at AND (m.converted_at IS NULL OR m.converted_at > m.received_at)) AS median_time_to_receive,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM m.converted_at - m.received_at)) FILTER (WHERE m.converted_at > m.received_at) AS median_time_to_convert`;

const round1 = (value: unknown): number | null => (value === null || value === undefined ? null : Math.round(Number(value) * 10) / 10);

function toEngagement(r: Record<string, unknown> | undefined): EngagementFigures {
  const total = Number(r?.total_users ?? 0);
  const active = Number(r?.active_users ?? 0);
  return {
    total_users: total,
    active_users: active,
    engagement_rate: percent(active, total),
    average_response_time: round1(r?.average_response_time),
    median_time_to_receive: round1(r?.median_time_to_receive),
    median_time_to_convert: round1(r?.median_time_to_convert),
  };
}

/**
 * Most segments `GET /analytics/engagement` returns: a tag holding a per-device value (a device id)
 * would otherwise make one response of millions of entries, built on the API's only thread.
 */
export const MAX_ENGAGEMENT_SEGMENTS = 100;

/**
 * Engagement over messages created in the range that reached the provider (sent_at set); recipients
 * are subscriptions. Optionally grouped by the value of one subscription tag: the `maxSegments`
 * with the most recipients, and whether more exist.
 */
export async function engagement(
  db: Knex,
  applicationId: string,
  range: DayRange,
  segmentKey: string | undefined,
  maxSegments = MAX_ENGAGEMENT_SEGMENTS,
): Promise<{ overall: EngagementFigures; bySegment: Record<string, EngagementFigures>; segmentsTruncated: boolean }> {
  const where = `m.application_id = ? AND m.created_at >= ?::timestamptz AND m.created_at < ?::timestamptz AND m.sent_at IS NOT NULL`;
  const bindings = [applicationId, `${range.fromDay}T00:00:00Z`, `${addDays(range.toDay, 1)}T00:00:00Z`];
  const overall = await db.raw(`SELECT ${ENGAGEMENT_SELECT} FROM messages m WHERE ${where}`, bindings);
  let bySegment: Record<string, EngagementFigures> = {};
  let segmentsTruncated = false;
  if (segmentKey !== undefined) {
    const rows = await db.raw(
      `SELECT s.tags ->> ?::text AS segment, ${ENGAGEMENT_SELECT}
         FROM messages m JOIN subscriptions s ON s.application_id = m.application_id AND s.id = m.subscription_id
        WHERE ${where} AND s.tags ->> ?::text IS NOT NULL
        GROUP BY 1 ORDER BY total_users DESC, 1 LIMIT ?`,
      [segmentKey, ...bindings, segmentKey, maxSegments + 1],
    );
    const found = rows.rows as Array<Record<string, unknown>>;
    segmentsTruncated = found.length > maxSegments;
    // fromEntries defines own keys: assigning a segment named "__proto__" to {} set its prototype instead.
    bySegment = Object.fromEntries(found.slice(0, maxSegments).map((r) => [String(r.segment), toEngagement(r)]));
  }
  return { overall: toEngagement(overall.rows[0]), bySegment, segmentsTruncated };
}

/** Templates of the range ordered by SEQ-003 conversion rate (converted / received), from the rollup. */
export async function topConvertingTemplates(
  db: Knex,
  applicationId: string,
  range: DayRange,
  limit: number,
): Promise<Array<{ template_id: string; template_name: string | null; conversion_rate: number; total_sent: number; received: number; converted: number }>> {
  const result = await db.raw(
    `SELECT r.template_id, t.name AS template_name, r.created, r.received, r.converted
       FROM (SELECT template_id, sum(created)::bigint AS created, sum(received)::bigint AS received, sum(converted)::bigint AS converted
               FROM message_stats_daily
              WHERE application_id = ? AND day BETWEEN ? AND ? AND template_id <> ?::uuid
              GROUP BY template_id) r
       LEFT JOIN message_templates t ON t.application_id = ? AND t.id = r.template_id
      ORDER BY CASE WHEN r.received > 0 THEN r.converted::numeric / r.received ELSE 0 END DESC, r.created DESC, r.template_id
      LIMIT ?`,
    [applicationId, range.fromDay, range.toDay, NIL_UUID, applicationId, limit],
  );
  return (result.rows as Array<Record<string, unknown>>).map((r) => ({
    template_id: String(r.template_id),
    template_name: r.template_name === null ? null : String(r.template_name),
    conversion_rate: percent(Number(r.converted), Number(r.received)),
    total_sent: Number(r.created),
    received: Number(r.received),
    converted: Number(r.converted),
  }));
}

/**
 * Messages a provider accepted, per day the messages were created and channel (the rollup's
 * `successful`: ever sent), for usage. That is what the quota counts: a message cancelled, refused
 * by its provider or failed before sending is refunded, and one still waiting has not been used.
 * Counting created messages put a campaign refused by an exhausted quota into the usage in full.
 */
export async function sentByDayAndChannel(db: Knex, applicationId: string, range: DayRange): Promise<Array<{ date: string; channel: string; sent: number }>> {
  const result = await db.raw(
    `SELECT to_char(day, 'YYYY-MM-DD') AS date, channel, sum(successful)::bigint AS sent
       FROM message_stats_daily WHERE application_id = ? AND day BETWEEN ? AND ?
      GROUP BY day, channel HAVING sum(successful) > 0 ORDER BY day, channel`,
    [applicationId, range.fromDay, range.toDay],
  );
  return (result.rows as Array<Record<string, unknown>>).map((r) => ({ date: String(r.date), channel: String(r.channel), sent: Number(r.sent) }));
}

/** Active push subscriptions grouped by platform and one version column. */
export async function activeDevicesBy(
  db: Knex,
  applicationId: string,
  column: "os_version" | "app_version" | "sdk_version" | null,
): Promise<Array<{ platform: string; version: string; count: number }>> {
  const version = column ? `coalesce(${column}, 'unknown')` : `''`;
  const result = await db.raw(
    `SELECT CASE subscription_type WHEN 'iOSPush' THEN 'ios' ELSE 'android' END AS platform, ${version} AS version, count(*)::bigint AS count
       FROM subscriptions
      WHERE application_id = ? AND subscription_status > 0 AND subscription_type IN ('iOSPush', 'AndroidPush')
      GROUP BY 1, 2 ORDER BY count DESC, 1, 2`,
    [applicationId],
  );
  return (result.rows as Array<Record<string, unknown>>).map((r) => ({ platform: String(r.platform), version: String(r.version), count: Number(r.count) }));
}
