import { z } from "zod";
import { TEMPLATE_CHANNELS } from "../templates/schemas";
import { queryInteger } from "../http/validation";
import { TagKey } from "../subscriptions/schemas";

/** Longest period one analytics request may cover, in days (bounds the rollup rows read). */
export const MAX_RANGE_DAYS = 366;

/** Default period when `from` is omitted: the last 30 UTC days including `to`. */
export const DEFAULT_RANGE_DAYS = 30;

const DAY_MS = 86_400_000;
const EARLIEST_DAY_MS = Date.parse("1970-01-01T00:00:00Z");
// The day after the last one must still be a 4-digit year: queries bound a range by `to` + 1 day,
// and 10000-01-01 is no date PostgreSQL or toISOString's plain form can write.
const LATEST_DAY_MS = Date.parse("9999-12-30T23:59:59.999Z");

/** An ISO 8601 date or date-time; only its UTC calendar day matters (the rollups are per day). */
const DateParam = z
  .union([z.iso.date(), z.iso.datetime({ offset: true })])
  // Year 0 or a UTC day past 9999 is valid ISO 8601 but out of PostgreSQL's (and toISOString's) plain range.
  .refine((value) => {
    const ms = Date.parse(value.length === 10 ? `${value}T00:00:00Z` : value);
    return ms >= EARLIEST_DAY_MS && ms <= LATEST_DAY_MS;
  }, "must be between 1970-01-01 and 9999-12-30")
  .describe("ISO 8601 date or date-time; truncated to its UTC day");

/** A resolved, inclusive range of UTC days, as `YYYY-MM-DD`. */
export interface DayRange {
  fromDay: string;
  toDay: string;
}

const utcDay = (value: string | Date): string => new Date(value).toISOString().slice(0, 10);

/** The days of a range, in order (at most {@link MAX_RANGE_DAYS} once validated). */
export function daysOf(range: DayRange): string[] {
  const count = (Date.parse(range.toDay) - Date.parse(range.fromDay)) / DAY_MS + 1;
  return Array.from({ length: Math.max(0, count) }, (_, i) => addDays(range.fromDay, i));
}

/** Adds `days` to a `YYYY-MM-DD` day. */
export function addDays(day: string, days: number): string {
  return new Date(Date.parse(`${day}T00:00:00Z`) + days * DAY_MS).toISOString().slice(0, 10);
}

/** Resolves optional from/to to a day range (defaults: to = today, from = to − 29 days). */
export function resolveRange(from: string | undefined, to: string | undefined, now: Date = new Date()): DayRange {
  const toDay = to ? utcDay(to) : utcDay(now);
  const fromDay = from ? utcDay(from) : addDays(toDay, -(DEFAULT_RANGE_DAYS - 1));
  return { fromDay, toDay };
}

const rangeShape = {
  from: DateParam.optional().describe("start (inclusive); defaults to 29 days before `to`"),
  to: DateParam.optional().describe("end (inclusive, the whole UTC day); defaults to today"),
};

/** Rejects from > to and ranges longer than {@link MAX_RANGE_DAYS} as a validation_error. */
function checkRange(value: { from?: string; to?: string }, ctx: z.RefinementCtx): void {
  const { fromDay, toDay } = resolveRange(value.from, value.to);
  const days = (Date.parse(toDay) - Date.parse(fromDay)) / DAY_MS + 1;
  if (days < 1) ctx.addIssue({ code: "custom", message: "must not be after `to`", path: ["from"] });
  else if (days > MAX_RANGE_DAYS) ctx.addIssue({ code: "custom", message: `the range may cover at most ${MAX_RANGE_DAYS} days`, path: ["from"] });
}

/** How series are bucketed; `channel` keeps a daily series (by_channel is always returned). */
export const GROUP_BY = ["day", "week", "month", "channel"] as const;

/** Query of `GET /analytics/messages` (REF-001 §7.1). */
export const MessageStatsQuery = z
  .strictObject({
    ...rangeShape,
    channel_type: z.enum(TEMPLATE_CHANNELS).optional(),
    group_by: z.enum(GROUP_BY).default("day"),
  })
  .superRefine(checkRange);

/** Query of `GET /analytics/subscriptions` (REF-001 §7.2). */
export const SubscriptionStatsQuery = z.strictObject({ ...rangeShape, group_by: z.enum(GROUP_BY).default("day") }).superRefine(checkRange);

/** Query of `GET /analytics/engagement` (REF-001 §7.3). */
export const EngagementQuery = z
  .strictObject({
    ...rangeShape,
    // Any key a subscription can hold (and a campaign target): a segment on a stored tag must be readable.
    segment: TagKey.optional().describe("tag key; by_segment groups recipients by that tag's value"),
    limit: queryInteger(1, 100).default(10).describe("top converting templates to return"),
  })
  .superRefine(checkRange);

/** Query of `GET /analytics/usage` (REF-001 §7.4); the default range is the UTC days the current quota month overlaps, through today. */
export const UsageQuery = z.strictObject(rangeShape).superRefine(checkRange);

/** Query of `GET /analytics/devices` (DESIGN-005 device statistics); the range applies to `trend`. */
export const DeviceStatsQuery = z.strictObject(rangeShape).superRefine(checkRange);

const Period = z.object({ from: z.string(), to: z.string() });
const Rate = z.number().describe("percent, 2 decimals; 0 when the denominator is 0");

/** Message counters plus SEQ-003 §5.1 rates. */
const MessageFigures = z.object({
  total_sent: z.number().int().describe("messages created (requested) in the period = successful + (failed − failed_after_sent) + errored + pending + cancelled"),
  successful: z.number().int().describe("accepted by the provider"),
  failed: z.number().int().describe("ended failed, before or after the provider accepted them"),
  failed_after_sent: z.number().int().describe("of failed, those accepted by the provider first (no receipt in time); also in successful"),
  errored: z.number().int().describe("currently errored (awaiting retry or abandoned)"),
  received: z.number().int(),
  converted: z.number().int(),
  cancelled: z.number().int(),
  pending: z.number().int(),
  delivery_rate: Rate,
  receive_rate: Rate,
  conversion_rate: Rate,
  overall_conversion_rate: Rate,
});

/** Response of `GET /analytics/messages`. */
export const MessageStatsView = z.object({
  period: Period,
  group_by: z.enum(GROUP_BY),
  summary: MessageFigures,
  by_channel: z.record(z.string(), MessageFigures),
  by_day: z.array(
    z.object({
      date: z.string().describe("bucket start (day, ISO week Monday or month's first day)"),
      total_sent: z.number().int(),
      successful: z.number().int(),
      failed: z.number().int(),
      failed_after_sent: z.number().int(),
      errored: z.number().int(),
      received: z.number().int(),
      converted: z.number().int(),
    }),
  ),
});

const SubscriptionFigures = z.object({
  total_active: z.number().int().describe("active now (subscription_status > 0)"),
  new_subscriptions: z.number().int().describe("subscribed in the period, re-subscriptions included"),
  resubscribed: z.number().int(),
  unsubscribed: z.number().int(),
  net_change: z.number().int(),
});

/** Response of `GET /analytics/subscriptions`. */
export const SubscriptionStatsView = z.object({
  period: Period,
  group_by: z.enum(GROUP_BY),
  summary: SubscriptionFigures,
  by_channel: z.record(z.string(), SubscriptionFigures),
  by_day: z.array(z.object({ date: z.string(), new_subscriptions: z.number().int(), unsubscribed: z.number().int(), net_change: z.number().int() })),
});

const EngagementFigures = z.object({
  total_users: z.number().int().describe("distinct recipients (subscriptions) sent a message in the period"),
  active_users: z.number().int().describe("of those, recipients who converted at least one"),
  engagement_rate: Rate,
  average_response_time: z.number().nullable().describe("mean seconds from received to converted"),
  median_time_to_receive: z.number().nullable().describe("median seconds sent_at → received_at"),
  median_time_to_convert: z.number().nullable().describe("median seconds received_at → converted_at"),
});

/** Response of `GET /analytics/engagement`. */
export const EngagementView = z.object({
  period: Period,
  overall_engagement: EngagementFigures,
  by_segment: z.record(z.string(), EngagementFigures).describe("the 100 segments with the most recipients"),
  by_segment_truncated: z.boolean().describe("true when the tag has more values than by_segment holds"),
  top_converting_messages: z.array(
    z.object({
      template_id: z.string(),
      template_name: z.string().nullable(),
      conversion_rate: Rate,
      total_sent: z.number().int(),
      received: z.number().int(),
      converted: z.number().int(),
    }),
  ),
});

const Allowance = z.object({ limit: z.number().int(), used: z.number().int(), remaining: z.number().int(), reset_at: z.string() }).nullable();

/** Response of `GET /analytics/usage`. */
export const UsageView = z.object({
  current_period: z.object({ start_date: z.string(), end_date: z.string() }),
  period: Period,
  quotas: z.object({ daily: Allowance, monthly: Allowance }).describe("null when no limit is configured"),
  credit: z.object({ balance: z.number(), unit_price: z.number().nullable(), currency: z.string() }).nullable(),
  usage_by_channel: z.record(z.string(), z.number().int()),
  usage_trend: z.array(z.record(z.string(), z.union([z.string(), z.number()])).describe("{date, total, <channel>: count}")),
});

const VersionCount = z.object({ platform: z.string(), version: z.string(), count: z.number().int() });
const PlatformTrend = z.object({ new_subscriptions: z.number().int(), unsubscribed: z.number().int(), net_change: z.number().int() });

/** Response of `GET /analytics/devices`. */
export const DeviceStatsView = z.object({
  period: Period,
  total_active: z.number().int(),
  by_platform: z.record(z.string(), z.object({ active: z.number().int(), percentage: Rate })),
  by_os_version: z.array(VersionCount),
  by_app_version: z.array(VersionCount),
  by_sdk_version: z.array(VersionCount),
  trend: z.array(z.object({ date: z.string(), ios: PlatformTrend, android: PlatformTrend })),
});
