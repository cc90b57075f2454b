import type { Knex } from "knex";
import { defineRoute, type RouteSpec } from "../http/route";
import { percent } from "../http/format";
import { quotaStatus } from "../quota/quota";
import { periodKeys, resolveTimeZone, startOfLocalDay } from "../quota/periods";
import {
  CHANNEL_OF_SUBSCRIPTION_TYPE,
  activeByType,
  activeDevicesBy,
  sentByDayAndChannel,
  engagement,
  messageFigures,
  messageStats,
  subscriptionChanges,
  topConvertingTemplates,
  type Bucket,
  type SubscriptionChanges,
} from "./repository";
import {
  DeviceStatsQuery,
  DeviceStatsView,
  EngagementQuery,
  EngagementView,
  MessageStatsQuery,
  MessageStatsView,
  SubscriptionStatsQuery,
  SubscriptionStatsView,
  UsageQuery,
  UsageView,
  daysOf,
  resolveRange,
  type DayRange,
} from "./schemas";

const TAG = "Analytics";

const utcDay = (at: Date): string => at.toISOString().slice(0, 10);

const periodView = (range: DayRange): { from: string; to: string } => ({ from: `${range.fromDay}T00:00:00Z`, to: `${range.toDay}T23:59:59Z` });

const bucketOf = (groupBy: "day" | "week" | "month" | "channel"): Bucket => (groupBy === "channel" ? "day" : groupBy);

function subscriptionFigures(active: number, c: SubscriptionChanges): Record<string, number> {
  const added = c.new_subscriptions + c.resubscribed;
  return { total_active: active, new_subscriptions: added, resubscribed: c.resubscribed, unsubscribed: c.unsubscribed, net_change: added - c.unsubscribed };
}

const noChanges = (): SubscriptionChanges => ({ new_subscriptions: 0, resubscribed: 0, unsubscribed: 0 });

function addChanges(into: SubscriptionChanges, c: SubscriptionChanges): void {
  into.new_subscriptions += c.new_subscriptions;
  into.resubscribed += c.resubscribed;
  into.unsubscribed += c.unsubscribed;
}

/** The quota's monthly period (quota timezone, else the application's). */
async function currentMonth(db: Knex, applicationId: string, appTimezone: string, now: Date): Promise<{ start: Date; end: Date }> {
  const row = await db("message_quotas").where("application_id", applicationId).first<{ timezone: string | null } | undefined>("timezone");
  const timezone = resolveTimeZone(row?.timezone, appTimezone);
  const keys = periodKeys(now, timezone);
  const [year, month] = keys.month.split("-").map(Number) as [number, number];
  const start = startOfLocalDay(year, month, 1, timezone);
  const next = month === 12 ? startOfLocalDay(year + 1, 1, 1, timezone) : startOfLocalDay(year, month + 1, 1, timezone);
  return { start, end: new Date(next.getTime() - 1000) };
}

/** Routes of the analytics domain (REF-001 §7, DESIGN-005 device statistics); tenant = the API key's application. */
export const analyticsRoutes: RouteSpec[] = [
  defineRoute({
    method: "get",
    path: "/analytics/messages",
    summary: "Message statistics with SEQ-003 §5.1 rates, by channel and by day/week/month",
    tag: TAG,
    auth: "apiKey",
    query: MessageStatsQuery,
    responses: { 200: { description: "Message statistics (messages counted on the UTC day they were created)", schema: MessageStatsView } },
    handler: async ({ query, application, deps }) => {
      const range = resolveRange(query.from, query.to);
      const { byChannel, series } = await messageStats(deps.db, application.id, range, query.channel_type, bucketOf(query.group_by));
      const total = { created: 0, successful: 0, received: 0, converted: 0, failed: 0, cancelled: 0, errored: 0, pending: 0, failed_after_sent: 0 };
      const channels: Record<string, Record<string, number>> = {};
      for (const { channel, ...counters } of byChannel) {
        channels[channel] = messageFigures(counters);
        for (const key of Object.keys(total) as Array<keyof typeof total>) total[key] += counters[key];
      }
      return {
        data: {
          period: periodView(range),
          group_by: query.group_by,
          summary: messageFigures(total),
          by_channel: channels,
          by_day: series.map((s) => ({
            date: s.date,
            total_sent: s.created,
            successful: s.successful,
            failed: s.failed,
            failed_after_sent: s.failed_after_sent,
            errored: s.errored,
            received: s.received,
            converted: s.converted,
          })),
        },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/analytics/subscriptions",
    summary: "Subscription statistics: active now, new, unsubscribed and net change, by channel and over time",
    tag: TAG,
    auth: "apiKey",
    query: SubscriptionStatsQuery,
    responses: { 200: { description: "Subscription statistics", schema: SubscriptionStatsView } },
    handler: async ({ query, application, deps }) => {
      const range = resolveRange(query.from, query.to);
      const [active, { byType, series }] = await Promise.all([
        activeByType(deps.db, application.id),
        subscriptionChanges(deps.db, application.id, range, bucketOf(query.group_by)),
      ]);
      const channelActive = new Map<string, number>();
      const channelChanges = new Map<string, SubscriptionChanges>();
      for (const type of new Set([...active.keys(), ...byType.keys()])) {
        const channel = CHANNEL_OF_SUBSCRIPTION_TYPE[type] ?? type;
        channelActive.set(channel, (channelActive.get(channel) ?? 0) + (active.get(type) ?? 0));
        const changes = channelChanges.get(channel) ?? noChanges();
        addChanges(changes, byType.get(type) ?? noChanges());
        channelChanges.set(channel, changes);
      }
      const total = noChanges();
      const byChannel: Record<string, Record<string, number>> = {};
      let totalActive = 0;
      for (const [channel, changes] of [...channelChanges].sort(([x], [y]) => x.localeCompare(y))) {
        addChanges(total, changes);
        totalActive += channelActive.get(channel) ?? 0;
        byChannel[channel] = subscriptionFigures(channelActive.get(channel) ?? 0, changes);
      }
      const buckets = new Map<string, SubscriptionChanges>();
      for (const row of series) {
        const changes = buckets.get(row.date) ?? noChanges();
        addChanges(changes, row);
        buckets.set(row.date, changes);
      }
      return {
        data: {
          period: periodView(range),
          group_by: query.group_by,
          summary: subscriptionFigures(totalActive, total),
          by_channel: byChannel,
          by_day: [...buckets].map(([date, c]) => ({
            date,
            new_subscriptions: c.new_subscriptions + c.resubscribed,
            unsubscribed: c.unsubscribed,
            net_change: c.new_subscriptions + c.resubscribed - c.unsubscribed,
          })),
        },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/analytics/engagement",
    summary: "Engagement: recipients who converted, by tag segment; latency medians (SEQ-003 §5.2); top converting templates",
    tag: TAG,
    auth: "apiKey",
    query: EngagementQuery,
    responses: { 200: { description: "Engagement over messages created in the period", schema: EngagementView } },
    handler: async ({ query, application, deps }) => {
      const range = resolveRange(query.from, query.to);
      const [{ overall, bySegment, segmentsTruncated }, top] = await Promise.all([
        engagement(deps.db, application.id, range, query.segment),
        topConvertingTemplates(deps.db, application.id, range, query.limit),
      ]);
      return { data: { period: periodView(range), overall_engagement: overall, by_segment: bySegment, by_segment_truncated: segmentsTruncated, top_converting_messages: top } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/analytics/usage",
    summary: "Usage and quota: daily/monthly allowance from the ledger, messages sent (accepted by a provider) by channel and per day",
    tag: TAG,
    auth: "apiKey",
    query: UsageQuery,
    responses: { 200: { description: "Usage by UTC day (the default range is the UTC days the current quota month overlaps, through today)", schema: UsageView } },
    handler: async ({ query, application, deps }) => {
      const now = new Date();
      const month = await currentMonth(deps.db, application.id, application.timezone, now);
      // The rollup's days are UTC days, so the default is the UTC days the quota month overlaps. Its local
      // dates (1st..today) ended a day early west of UTC, leaving out what was sent since UTC midnight,
      // and ran into a UTC day still to come east of it.
      const range = query.from || query.to ? resolveRange(query.from, query.to, now) : { fromDay: utcDay(month.start), toDay: utcDay(now) };
      const [quota, rows] = await Promise.all([quotaStatus(deps.db, application.id, now), sentByDayAndChannel(deps.db, application.id, range)]);
      const byChannel: Record<string, number> = {};
      const perDay = new Map<string, Record<string, number>>();
      for (const row of rows) {
        byChannel[row.channel] = (byChannel[row.channel] ?? 0) + row.sent;
        const day = perDay.get(row.date) ?? {};
        day[row.channel] = row.sent;
        perDay.set(row.date, day);
      }
      // Zero-filled so a chart shows quiet days; every channel seen in the range appears on every day.
      const trend: Array<Record<string, string | number>> = [];
      for (const day of daysOf(range)) {
        const counts = perDay.get(day) ?? {};
        const entry: Record<string, string | number> = { date: day, total: Object.values(counts).reduce((a, b) => a + b, 0) };
        for (const channel of Object.keys(byChannel)) entry[channel] = counts[channel] ?? 0;
        trend.push(entry);
      }
      return {
        data: {
          current_period: { start_date: month.start.toISOString(), end_date: month.end.toISOString() },
          period: periodView(range),
          quotas: { daily: quota.daily, monthly: quota.monthly },
          credit: quota.credit,
          usage_by_channel: byChannel,
          usage_trend: trend,
        },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/analytics/devices",
    summary: "Device statistics (DESIGN-005): active push devices by platform, OS, app and SDK version; daily trend",
    tag: TAG,
    auth: "apiKey",
    query: DeviceStatsQuery,
    responses: { 200: { description: "Device statistics over active push subscriptions", schema: DeviceStatsView } },
    handler: async ({ query, application, deps }) => {
      const range = resolveRange(query.from, query.to);
      const [platforms, os, app, sdk, { series }] = await Promise.all([
        activeDevicesBy(deps.db, application.id, null),
        activeDevicesBy(deps.db, application.id, "os_version"),
        activeDevicesBy(deps.db, application.id, "app_version"),
        activeDevicesBy(deps.db, application.id, "sdk_version"),
        subscriptionChanges(deps.db, application.id, range, "day"),
      ]);
      const totalActive = platforms.reduce((sum, p) => sum + p.count, 0);
      const byPlatform: Record<string, { active: number; percentage: number }> = {};
      for (const platform of ["ios", "android"]) {
        const active = platforms.find((p) => p.platform === platform)?.count ?? 0;
        byPlatform[platform] = { active, percentage: percent(active, totalActive) };
      }
      const trend = new Map<string, { ios: SubscriptionChanges; android: SubscriptionChanges }>();
      for (const row of series) {
        const entry = trend.get(row.date) ?? { ios: noChanges(), android: noChanges() };
        if (row.subscription_type === "iOSPush") addChanges(entry.ios, row);
        if (row.subscription_type === "AndroidPush") addChanges(entry.android, row);
        trend.set(row.date, entry);
      }
      const platformTrend = (c: SubscriptionChanges): { new_subscriptions: number; unsubscribed: number; net_change: number } => ({
        new_subscriptions: c.new_subscriptions + c.resubscribed,
        unsubscribed: c.unsubscribed,
        net_change: c.new_subscriptions + c.resubscribed - c.unsubscribed,
      });
      return {
        data: {
          period: periodView(range),
          total_active: totalActive,
          by_platform: byPlatform,
          by_os_version: os,
          by_app_version: app,
          by_sdk_version: sdk,
          trend: [...trend].map(([date, e]) => ({ date, ios: platformTrend(e.ios), android: platformTrend(e.android) })),
        },
      };
    },
  }),
];
