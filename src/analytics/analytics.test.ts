import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { startTestApp, type TestApp } from "../../test/support/harness";
import { createPushSubscription } from "../../test/support/fixtures";
import { newId } from "../db/ids";
import { debitMessageQuota, quotaStatus } from "../quota/quota";
import { MESSAGE_COUNTERS } from "../../migrations/20261122005000_analytics";
import { engagement } from "./repository";
import { resolveRange } from "./schemas";

let app: TestApp;
let a: { id: string; apiKey: string };
let b: { id: string; apiKey: string };
let templates: string[] = [];

const DAY_MS = 86_400_000;
const now = awayFromMidnightUtc();

/**
 * The file's "now", moved off midnight UTC: rows seeded as today (a minute back) and the status
 * changes the database dates at commit must fall on one UTC day, which a run starting within a
 * minute or so of midnight would split. Blocks (at most 3 minutes, before any test) until clear.
 */
function awayFromMidnightUtc(): number {
  const margin = 90_000;
  const intoDay = Date.now() % DAY_MS;
  const wait = intoDay >= DAY_MS - margin ? DAY_MS - intoDay + margin : intoDay < margin ? margin - intoDay : 0;
  if (wait > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait);
  return Date.now();
}
const dayOf = (d: Date): string => d.toISOString().slice(0, 10);
const today = dayOf(new Date(now));
const daysAgo = (n: number): string => dayOf(new Date(now - n * DAY_MS));
// The range every query uses: six days, today included (subscription transitions are dated today).
const FROM = daysAgo(5);
const TO = today;

type Path = "pending" | "converted" | "received" | "sdk_convert" | "retry_success" | "errored_twice" | "failed" | "sent_then_failed" | "cancelled";
const PATHS: Path[] = ["pending", "converted", "received", "sdk_convert", "retry_success", "errored_twice", "failed", "sent_then_failed", "cancelled"];

/** The status sequence the pipeline applies for each path (SEQ-003 transitions). */
const STEPS: Record<Path, string[]> = {
  pending: [],
  converted: ["successful", "received", "converted"],
  received: ["successful", "received"],
  sdk_convert: ["successful", "received+converted"],
  retry_success: ["errored", "pending", "successful"],
  errored_twice: ["errored", "pending", "errored"],
  failed: ["failed"],
  sent_then_failed: ["successful", "failed"],
  cancelled: ["cancelled"],
};

const round2 = (part: number, whole: number): number => (whole > 0 ? Math.round((part / whole) * 10_000) / 100 : 0);

function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  const value = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return Math.round(value * 10) / 10;
}

async function get(key: string, path: string): Promise<any> {
  const res = await app.request("GET", path, { key });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data;
}

/** Direct counts over `messages`: the oracle the rollup must equal. */
async function directMessageCounts(applicationId: string, groupExpr: string): Promise<Map<string, Record<string, number>>> {
  const result = await app.deps.db.raw(
    `SELECT ${groupExpr} AS k, count(*) AS created, count(sent_at) AS successful, count(received_at) AS received, count(converted_at) AS converted,
            count(*) FILTER (WHERE status = 'failed') AS failed, count(*) FILTER (WHERE status = 'errored') AS errored,
            count(*) FILTER (WHERE status = 'cancelled') AS cancelled, count(*) FILTER (WHERE status = 'pending') AS pending,
            count(*) FILTER (WHERE status = 'failed' AND sent_at IS NOT NULL) AS failed_after_sent
       FROM messages WHERE application_id = ? AND created_at >= ?::timestamptz AND created_at < ?::timestamptz GROUP BY 1`,
    [applicationId, `${FROM}T00:00:00Z`, `${dayOf(new Date(Date.parse(TO) + DAY_MS))}T00:00:00Z`],
  );
  const out = new Map<string, Record<string, number>>();
  for (const row of result.rows) {
    const { k, ...rest } = row;
    out.set(String(k), Object.fromEntries(Object.entries(rest).map(([key, v]) => [key, Number(v)])));
  }
  return out;
}

function expectedFigures(c: Record<string, number>): Record<string, number> {
  // Each attempted message once: one sent and then failed (receipt timeout) is successful, not also a failure.
  const attempted = c.successful! + c.failed! - c.failed_after_sent! + c.errored!;
  return {
    total_sent: c.created!,
    successful: c.successful!,
    failed: c.failed!,
    failed_after_sent: c.failed_after_sent!,
    errored: c.errored!,
    received: c.received!,
    converted: c.converted!,
    cancelled: c.cancelled!,
    pending: c.pending!,
    delivery_rate: round2(c.successful!, attempted),
    receive_rate: round2(c.received!, c.successful!),
    conversion_rate: round2(c.converted!, c.received!),
    overall_conversion_rate: round2(c.converted!, attempted),
  };
}

interface SeedSub {
  id: string;
  type: string;
  status: number;
  level?: string;
  createdDaysAgo: number;
}
const subs: SeedSub[] = [];
let unsubscribedToday = 0;
let resubscribedToday = 0;

/** Seeds subscriptions and messages for app A, then drives statuses with UPDATEs like the pipeline. */
async function seed(): Promise<void> {
  const db = app.deps.db;
  for (const name of ["flash sale", "restock"]) {
    const id = newId();
    await db("message_templates").insert({ id, application_id: a.id, name: `${name}-${crypto.randomUUID()}` });
    templates.push(id);
  }
  const types = ["iOSPush", "iOSPush", "AndroidPush", "AndroidPush", "Email", "iOSPush", "AndroidPush", "Email", "iOSPush", "AndroidPush", "SMS", "iOSPush"];
  const subRows = types.map((type, i) => {
    const level = i % 3 === 0 ? "gold" : i % 3 === 1 ? "silver" : undefined;
    const status = i === 10 ? -2 : 1; // one never-active subscription is not a "new" one
    const seedSub: SeedSub = { id: newId(), type, status, level, createdDaysAgo: i % 5 };
    subs.push(seedSub);
    return {
      id: seedSub.id,
      application_id: a.id,
      subscription_type: type,
      subscription_status: status,
      tags: level ? { level } : {},
      device_os: type === "iOSPush" ? "iOS" : type === "AndroidPush" ? "Android" : null,
      os_version: type === "iOSPush" ? (i % 2 ? "17.4" : "18.1") : type === "AndroidPush" ? "14" : null,
      app_version: i % 2 ? "2.0.0" : "1.9.3",
      sdk_version: "1.4.0",
      created_at: new Date(now - seedSub.createdDaysAgo * DAY_MS - 60_000),
    };
  });
  await db("subscriptions").insert(subRows); // one multi-row statement
  // Today: two unsubscribe (one multi-row UPDATE), one of them re-subscribes.
  await db("subscriptions").whereIn("id", [subs[8]!.id, subs[9]!.id]).update({ subscription_status: -2, unsubscribed_at: new Date() });
  unsubscribedToday = 2;
  await db("subscriptions").where("id", subs[9]!.id).update({ subscription_status: 1 });
  resubscribedToday = 1;
  subs[8]!.status = -2;

  const subFor = (channel: string, i: number): SeedSub => {
    const pool = subs.filter((s) => (channel === "email" ? s.type === "Email" : s.type === "iOSPush" || s.type === "AndroidPush"));
    return pool[i % pool.length]!;
  };
  const messages: Array<{ id: string; path: Path; row: Record<string, unknown> }> = [];
  for (let i = 0; i < 72; i++) {
    const channel = i % 4 === 3 ? "email" : "push";
    const sub = subFor(channel, i);
    const path = PATHS[i % PATHS.length]!;
    const created = new Date(now - (i % 6) * DAY_MS - 120_000 - i * 1000);
    messages.push({
      id: newId(),
      path,
      row: {
        application_id: a.id,
        subscription_id: sub.id,
        channel,
        subscription_type: sub.type,
        template_id: i % 3 === 2 ? null : templates[i % 2],
        template_version: i % 3 === 2 ? null : 1,
        body: `m${i}`,
        created_at: created,
      },
    });
  }
  // Two messages outside the range: must never be counted.
  messages.push({ id: newId(), path: "converted", row: { application_id: a.id, channel: "push", body: "old", created_at: new Date(now - 40 * DAY_MS) } });
  await db("messages").insert(messages.slice(0, 40).map((m) => ({ id: m.id, ...m.row })));
  for (const m of messages.slice(40)) await db("messages").insert({ id: m.id, ...m.row });

  // Apply the paths step by step: bulk UPDATEs for sends/errors, single-row for receipts/conversions.
  for (let step = 0; step < 3; step++) {
    const byTarget = new Map<string, string[]>();
    for (const m of messages) {
      const target = STEPS[m.path][step];
      if (target) byTarget.set(target, [...(byTarget.get(target) ?? []), m.id]);
    }
    for (const [target, ids] of byTarget) {
      if (target === "successful") {
        await db.raw(`UPDATE messages SET status = 'successful', sent_at = created_at + make_interval(secs => 2 + (attempts + 1) * 3), attempts = attempts + 1 WHERE id = ANY(?::uuid[])`, [ids]);
      } else if (target === "errored" || target === "pending") {
        await db("messages").whereIn("id", ids).update({ status: target, attempts: db.raw("attempts + 1") });
      } else if (target === "failed") {
        await db("messages").whereIn("id", ids).update({ status: "failed", failed_at: new Date() });
      } else if (target === "cancelled") {
        await db("messages").whereIn("id", ids).update({ status: "cancelled", cancelled_at: new Date() });
      } else {
        for (const [n, id] of ids.entries()) {
          if (target === "received") {
            await db.raw(`UPDATE messages SET status = 'received', received_at = sent_at + make_interval(secs => ?) WHERE id = ?`, [10 + n * 7, id]);
          } else if (target === "converted") {
            await db.raw(`UPDATE messages SET status = 'converted', converted_at = received_at + make_interval(secs => ?) WHERE id = ?`, [30 + n * 11, id]);
          } else {
            // An SDK conversion without a prior receipt: receive then convert in one transaction.
            await db.transaction(async (trx) => {
              await trx.raw(`UPDATE messages SET status = 'received', received_at = sent_at + interval '4 seconds' WHERE id = ?`, [id]);
              await trx.raw(`UPDATE messages SET status = 'converted', converted_at = received_at + make_interval(secs => ?) WHERE id = ?`, [5 + n, id]);
            });
          }
        }
      }
    }
  }
  // A rolled-back status change must not reach the rollup.
  const pendingOne = messages.find((m) => m.path === "pending")!;
  await assert.rejects(
    db.transaction(async (trx) => {
      await trx("messages").where("id", pendingOne.id).update({ status: "cancelled" });
      throw new Error("rollback");
    }),
    /rollback/,
  );
  // A non-status update (e.g. the subscription_id SET NULL cascade) must not change counts.
  await db("messages").where("id", messages[1]!.id).update({ body: "edited" });
}

before(async () => {
  app = await startTestApp();
  a = await app.createApplication({ quota: { daily_quota: 1000, monthly_quota: 20000 } });
  b = await app.createApplication();
  await seed();
});

after(async () => {
  await app?.close();
});

describe("GET /analytics/messages", () => {
  test("summary and by_channel equal direct counts, with SEQ-003 §5.1 rates", async () => {
    const data = await get(a.apiKey, `/analytics/messages?from=${FROM}&to=${TO}`);
    assert.deepEqual(data.period, { from: `${FROM}T00:00:00Z`, to: `${TO}T23:59:59Z` });
    const byChannel = await directMessageCounts(a.id, "channel");
    const total = await directMessageCounts(a.id, "'all'");
    assert.deepEqual(data.summary, expectedFigures(total.get("all")!));
    assert.deepEqual(Object.keys(data.by_channel).sort(), [...byChannel.keys()].sort());
    for (const [channel, counts] of byChannel) assert.deepEqual(data.by_channel[channel], expectedFigures(counts), channel);
    // Sanity: the seeded paths really exercised every counter.
    for (const key of ["successful", "failed", "failed_after_sent", "errored", "received", "converted", "cancelled", "pending"]) assert.ok(data.summary[key] > 0, key);
    // Every message is in exactly one place, so the figures add up to what was requested.
    for (const figures of [data.summary, ...Object.values(data.by_channel)] as Array<Record<string, number>>) {
      assert.equal(figures.successful! + figures.failed! - figures.failed_after_sent! + figures.errored! + figures.pending! + figures.cancelled!, figures.total_sent);
    }
  });

  test("by_day equals direct counts per UTC creation day, zero-filled", async () => {
    const data = await get(a.apiKey, `/analytics/messages?from=${FROM}&to=${TO}&group_by=day`);
    const perDay = await directMessageCounts(a.id, "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')");
    assert.equal(data.by_day.length, 6);
    for (const row of data.by_day) {
      const c = perDay.get(row.date) ?? { created: 0, successful: 0, failed: 0, failed_after_sent: 0, errored: 0, received: 0, converted: 0 };
      assert.deepEqual(row, { date: row.date, total_sent: c.created, successful: c.successful, failed: c.failed, failed_after_sent: c.failed_after_sent, errored: c.errored, received: c.received, converted: c.converted });
    }
  });

  test("channel_type filter and week buckets", async () => {
    const data = await get(a.apiKey, `/analytics/messages?from=${FROM}&to=${TO}&channel_type=email&group_by=week`);
    const email = (await directMessageCounts(a.id, "channel")).get("email")!;
    assert.deepEqual(Object.keys(data.by_channel), ["email"]);
    assert.deepEqual(data.summary, expectedFigures(email));
    assert.equal(
      data.by_day.reduce((sum: number, r: { total_sent: number }) => sum + r.total_sent, 0),
      email.created,
    );
    for (const row of data.by_day) assert.equal(new Date(`${row.date}T00:00:00Z`).getUTCDay(), 1, "weeks start on Monday");
  });

  test("month buckets start on the 1st and add up to the period; group_by=channel keeps daily rows beside by_channel", async () => {
    const daily = await get(a.apiKey, `/analytics/messages?from=${FROM}&to=${TO}&group_by=day`);
    const monthly = await get(a.apiKey, `/analytics/messages?from=${FROM}&to=${TO}&group_by=month`);
    for (const row of monthly.by_day) assert.equal(row.date.slice(8), "01", "months start on the 1st");
    const months = new Set(daily.by_day.map((r: { date: string }) => `${r.date.slice(0, 7)}-01`));
    assert.deepEqual(monthly.by_day.map((r: { date: string }) => r.date), [...months]);
    assert.equal(monthly.by_day.reduce((sum: number, r: { total_sent: number }) => sum + r.total_sent, 0), monthly.summary.total_sent);
    const byChannel = await get(a.apiKey, `/analytics/messages?from=${FROM}&to=${TO}&group_by=channel`);
    assert.deepEqual(byChannel.by_day, daily.by_day);
    assert.deepEqual(byChannel.by_channel, daily.by_channel);
  });

  test("another application sees zeros", async () => {
    const data = await get(b.apiKey, `/analytics/messages?from=${FROM}&to=${TO}`);
    assert.equal(data.summary.total_sent, 0);
    assert.equal(data.summary.delivery_rate, 0);
    assert.deepEqual(data.by_channel, {});
    assert.ok(data.by_day.every((r: { total_sent: number }) => r.total_sent === 0));
  });
});

describe("GET /analytics/subscriptions", () => {
  test("active now, new, unsubscribed and net change equal the seeded changes", async () => {
    const data = await get(a.apiKey, `/analytics/subscriptions?from=${FROM}&to=${TO}`);
    const active = await app.deps.db("subscriptions").where({ application_id: a.id }).where("subscription_status", ">", 0).count<{ count: string }[]>({ count: "*" });
    const inserted = subs.filter((s) => s.id !== subs[10]!.id).length; // inserted active
    assert.deepEqual(data.summary, {
      total_active: Number(active[0]!.count),
      new_subscriptions: inserted + resubscribedToday,
      resubscribed: resubscribedToday,
      unsubscribed: unsubscribedToday,
      net_change: inserted + resubscribedToday - unsubscribedToday,
    });
    // by_channel: push = iOS + Android.
    const pushActive = subs.filter((s) => (s.type === "iOSPush" || s.type === "AndroidPush") && s.status > 0).length;
    assert.equal(data.by_channel.push.total_active, pushActive);
    // The only SMS subscription was never active: a channel without activity is left out.
    assert.equal(data.by_channel.sms, undefined);
    const todayRow = data.by_day.find((r: { date: string }) => r.date === today);
    const insertedToday = subs.filter((s) => s.createdDaysAgo === 0 && s.id !== subs[10]!.id).length;
    assert.equal(todayRow.unsubscribed, unsubscribedToday);
    assert.equal(todayRow.new_subscriptions, insertedToday + resubscribedToday);
    assert.equal(
      data.by_day.reduce((sum: number, r: { net_change: number }) => sum + r.net_change, 0),
      data.summary.net_change,
    );
  });

  test("another application sees zeros", async () => {
    const data = await get(b.apiKey, `/analytics/subscriptions?from=${FROM}&to=${TO}`);
    assert.deepEqual(data.summary, { total_active: 0, new_subscriptions: 0, resubscribed: 0, unsubscribed: 0, net_change: 0 });
  });
});

describe("GET /analytics/engagement", () => {
  test("recipients, medians (SEQ-003 §5.2), tag segments and top templates equal direct computation", async () => {
    const data = await get(a.apiKey, `/analytics/engagement?from=${FROM}&to=${TO}&segment=level`);
    const rows: Array<{ subscription_id: string; sent_at: Date | null; received_at: Date | null; converted_at: Date | null; level: string | null }> = (
      await app.deps.db.raw(
        `SELECT m.subscription_id, m.sent_at, m.received_at, m.converted_at, s.tags ->> 'level' AS level
           FROM messages m LEFT JOIN subscriptions s ON s.id = m.subscription_id
          WHERE m.application_id = ? AND m.created_at >= ?::timestamptz AND m.sent_at IS NOT NULL`,
        [a.id, `${FROM}T00:00:00Z`],
      )
    ).rows;
    const figures = (subset: typeof rows) => {
      const total = new Set(subset.map((r) => r.subscription_id)).size;
      const active = new Set(subset.filter((r) => r.converted_at).map((r) => r.subscription_id)).size;
      // A filled-in step (same timestamp as the report that implied it) measures nothing.
      const conv = subset.filter((r) => r.converted_at && r.converted_at > r.received_at!).map((r) => (r.converted_at!.getTime() - r.received_at!.getTime()) / 1000);
      const recv = subset.filter((r) => r.received_at && r.received_at > r.sent_at! && (!r.converted_at || r.converted_at > r.received_at)).map((r) => (r.received_at!.getTime() - r.sent_at!.getTime()) / 1000);
      return {
        total_users: total,
        active_users: active,
        engagement_rate: round2(active, total),
        average_response_time: conv.length ? Math.round((conv.reduce((x, y) => x + y, 0) / conv.length) * 10) / 10 : null,
        median_time_to_receive: median(recv),
        median_time_to_convert: median(conv),
      };
    };
    assert.deepEqual(data.overall_engagement, figures(rows));
    assert.deepEqual(Object.keys(data.by_segment).sort(), ["gold", "silver"]);
    for (const level of ["gold", "silver"]) assert.deepEqual(data.by_segment[level], figures(rows.filter((r) => r.level === level)), level);
    assert.equal(data.by_segment_truncated, false);
    // A tag with more values than the response holds keeps the segments with the most recipients
    // (ties by value).
    const users = (level: string) => new Set(rows.filter((r) => r.level === level).map((r) => r.subscription_id)).size;
    assert.ok(users("silver") <= users("gold"), "the seed gives gold at least as many recipients");
    const top = await engagement(app.deps.db, a.id, resolveRange(FROM, TO), "level", 1);
    assert.deepEqual(Object.keys(top.bySegment), ["gold"]);
    assert.equal(top.segmentsTruncated, true);
    // In an application of its own (the seed above is shared by the other tests): "b" has more
    // recipients than "__proto__", though "__proto__" sorts first (a value named like Object's
    // prototype is a segment like any other).
    const c = await app.createApplication();
    const template = (await app.deps.db("subscriptions").where("application_id", a.id).first()) as Record<string, unknown>;
    for (const level of ["__proto__", "b", "b"]) {
      const subscriptionId = newId();
      await app.deps.db("subscriptions").insert({ ...template, id: subscriptionId, application_id: c.id, user_id: null, tags: { level }, token_hash: crypto.randomBytes(32).toString("hex") });
      await app.deps.db("messages").insert({ id: newId(), application_id: c.id, subscription_id: subscriptionId, channel: "push", body: "hi", status: "successful", sent_at: new Date(), created_at: new Date() });
    }
    const bigger = await engagement(app.deps.db, c.id, resolveRange(FROM, TO), "level", 1);
    assert.deepEqual(Object.keys(bigger.bySegment), ["b"]);
    assert.equal(bigger.bySegment.b!.total_users, 2);
    assert.equal(bigger.segmentsTruncated, true);
    const both = await get(c.apiKey, `/analytics/engagement?from=${FROM}&to=${TO}&segment=level`);
    assert.deepEqual(Object.keys(both.by_segment).sort(), ["__proto__", "b"]);
    assert.equal(both.by_segment.__proto__.total_users, 1);

    const perTemplate = await directMessageCounts(a.id, "coalesce(template_id::text, 'none')");
    assert.equal(data.top_converting_messages.length, 2);
    for (const t of data.top_converting_messages) {
      const c = perTemplate.get(t.template_id)!;
      assert.deepEqual(
        { conversion_rate: t.conversion_rate, total_sent: t.total_sent, received: t.received, converted: t.converted },
        { conversion_rate: round2(c.converted!, c.received!), total_sent: c.created, received: c.received, converted: c.converted },
      );
      assert.match(t.template_name, /^(flash sale|restock)-/);
    }
    assert.ok(data.top_converting_messages[0].conversion_rate >= data.top_converting_messages[1].conversion_rate);
  });

  test("a conversion reported without a receipt (iOS without a notification service extension) does not count as a 0 s response: latencies come from real reports only", async () => {
    const own = await app.createApplication();
    const sub = await createPushSubscription(app, own.apiKey);
    const at = (seconds: number) => new Date(Date.parse(`${TO}T00:00:00Z`) + seconds * 1000);
    const insert = (sent: number, received: number, converted: number) =>
      app.deps.db("messages").insert({ id: newId(), application_id: own.id, subscription_id: sub.id, channel: "push", body: "hi", status: "converted", created_at: at(sent), sent_at: at(sent), received_at: at(received), converted_at: at(converted) });
    await insert(0, 2, 600); // Android: a receipt at +2 s, opened at +600 s
    await insert(0, 598, 598); // iOS: only the conversion at +598 s; the API filled in the receipt in its transaction
    await insert(0, 0, 300); // a receipt for a message whose send result was lost: send filled in
    const data = await get(own.apiKey, `/analytics/engagement?from=${TO}&to=${TO}`);
    assert.equal(data.overall_engagement.average_response_time, 449, "(598 + 300) / 2, not (598 + 0 + 300) / 3");
    assert.equal(data.overall_engagement.median_time_to_convert, 449);
    assert.equal(data.overall_engagement.median_time_to_receive, 2, "only the real receipt (the filled-in one is the open time)");
  });

  test("another application sees zeros", async () => {
    const data = await get(b.apiKey, `/analytics/engagement?from=${FROM}&to=${TO}&segment=level`);
    assert.deepEqual(data.overall_engagement, {
      total_users: 0,
      active_users: 0,
      engagement_rate: 0,
      average_response_time: null,
      median_time_to_receive: null,
      median_time_to_convert: null,
    });
    assert.deepEqual(data.by_segment, {});
    assert.deepEqual(data.top_converting_messages, []);
  });
});

describe("GET /analytics/usage", () => {
  test("quotas come from the ledger; usage by channel and trend equal the messages a provider accepted (cancelled, refused and waiting ones used no quota)", async () => {
    await debitMessageQuota(app.deps.db, { applicationId: a.id, messageId: newId() });
    await debitMessageQuota(app.deps.db, { applicationId: a.id, messageId: newId() });
    const data = await get(a.apiKey, `/analytics/usage?from=${FROM}&to=${TO}`);
    const status = await quotaStatus(app.deps.db, a.id);
    assert.deepEqual(data.quotas, { daily: status.daily, monthly: status.monthly });
    assert.equal(data.quotas.daily.used, 2);
    assert.equal(data.quotas.daily.remaining, 998);
    assert.equal(data.quotas.monthly.limit, 20000);
    assert.ok(Date.parse(data.current_period.start_date) <= now && now <= Date.parse(data.current_period.end_date));

    const byChannel = await directMessageCounts(a.id, "channel");
    assert.deepEqual(data.usage_by_channel, Object.fromEntries([...byChannel].filter(([, v]) => v.successful! > 0).map(([k, v]) => [k, v.successful])));
    assert.ok([...byChannel.values()].some((v) => v.created! > v.successful!), "the seed has messages never sent, which usage leaves out");
    const perDay = await directMessageCounts(a.id, "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')");
    assert.equal(data.usage_trend.length, 6);
    for (const row of data.usage_trend) assert.equal(row.total, perDay.get(row.date)?.successful ?? 0, row.date);

    const defaults = await get(a.apiKey, "/analytics/usage");
    assert.ok(defaults.period.to.startsWith(defaults.usage_trend.at(-1).date));
  });

  test("another application sees no usage and no limits", async () => {
    const data = await get(b.apiKey, "/analytics/usage");
    assert.deepEqual(data.quotas, { daily: null, monthly: null });
    assert.deepEqual(data.usage_by_channel, {});
  });
});

describe("GET /analytics/devices", () => {
  test("active push devices by platform and version equal direct grouping", async () => {
    const data = await get(a.apiKey, `/analytics/devices?from=${FROM}&to=${TO}`);
    const active = subs.filter((s) => s.status > 0 && (s.type === "iOSPush" || s.type === "AndroidPush"));
    const ios = active.filter((s) => s.type === "iOSPush").length;
    assert.equal(data.total_active, active.length);
    assert.deepEqual(data.by_platform.ios, { active: ios, percentage: round2(ios, active.length) });
    assert.equal(data.by_platform.android.active, active.length - ios);
    const direct = await app.deps.db.raw(
      `SELECT CASE subscription_type WHEN 'iOSPush' THEN 'ios' ELSE 'android' END AS platform, os_version AS version, count(*)::int AS count
         FROM subscriptions WHERE application_id = ? AND subscription_status > 0 AND subscription_type IN ('iOSPush', 'AndroidPush') GROUP BY 1, 2`,
      [a.id],
    );
    const sortKey = (r: { platform: string; version: string }) => `${r.platform}/${r.version}`;
    assert.deepEqual([...data.by_os_version].sort((x, y) => sortKey(x).localeCompare(sortKey(y))), [...direct.rows].sort((x, y) => sortKey(x).localeCompare(sortKey(y))));
    assert.equal(data.by_sdk_version.reduce((s: number, r: { count: number }) => s + r.count, 0), active.length);
    assert.equal(data.by_app_version.reduce((s: number, r: { count: number }) => s + r.count, 0), active.length);
    const todayTrend = data.trend.find((r: { date: string }) => r.date === today);
    assert.equal(todayTrend.ios.unsubscribed + todayTrend.android.unsubscribed, unsubscribedToday);

    const other = await get(b.apiKey, "/analytics/devices");
    assert.equal(other.total_active, 0);
    assert.deepEqual(other.by_os_version, []);
  });
});

test("the last accepted day, 9999-12-30, is answered: usage lists its 30 days, engagement bounds its range", async () => {
  const usage = await get(a.apiKey, "/analytics/usage?to=9999-12-30");
  assert.equal(usage.usage_trend.length, 30);
  assert.deepEqual([usage.usage_trend[0].date, usage.usage_trend.at(-1).date], ["9999-12-01", "9999-12-30"]);
  const engagement = await get(a.apiKey, "/analytics/engagement?to=9999-12-30");
  assert.equal(engagement.overall_engagement.total_users, 0);
});

test("a segment on any tag key a subscription can hold (spaces, Hangul, 128 characters) is answered", async () => {
  for (const key of ["회원 등급", "a b", "k".repeat(128)]) {
    const data = await get(a.apiKey, `/analytics/engagement?from=${FROM}&to=${TO}&segment=${encodeURIComponent(key)}`);
    assert.deepEqual(data.by_segment, {}, key);
  }
});

describe("validation", () => {
  for (const [path, field] of [
    ["/analytics/messages?from=2026-01-10&to=2026-01-01", "from"],
    ["/analytics/messages?from=2024-01-01&to=2026-01-01", "from"],
    ["/analytics/messages?from=yesterday", "from"],
    ["/analytics/messages?group_by=hour", "group_by"],
    ["/analytics/messages?channel_type=fax", "channel_type"],
    ["/analytics/subscriptions?bogus=1", "bogus"],
    [`/analytics/engagement?segment=${"k".repeat(129)}`, "segment"],
    ["/analytics/usage?to=2026-13-01", "to"],
    // Valid ISO 8601, but outside the days PostgreSQL and the rollups can hold.
    ["/analytics/messages?from=0000-01-01&to=0000-01-02", "from"],
    ["/analytics/usage?from=0000-01-01T00:00:00%2B01:00&to=0000-01-02", "from"],
    ["/analytics/engagement?from=9999-12-31T23:00:00-05:00", "from"],
    // The day after 9999-12-31 has a 5-digit year: a range ending there could not be bounded.
    ["/analytics/usage?to=9999-12-31", "to"],
    ["/analytics/engagement?to=9999-12-31", "to"],
  ] as const) {
    test(`${path} → validation_error on ${field}`, async () => {
      const res = await app.request("GET", path, { key: a.apiKey });
      assert.equal(res.status, 422, JSON.stringify(res.body));
      assert.equal(res.body.error.code, "validation_error");
      assert.ok(field in res.body.error.details.fields, JSON.stringify(res.body.error.details));
    });
  }

  test("requires an API key", async () => {
    const res = await app.request("GET", "/analytics/messages");
    assert.equal(res.status, 401);
  });
});

describe("backfill", () => {
  test("analytics_backfill rebuilds exactly what the triggers maintained", async () => {
    const db = app.deps.db;
    const snapshot = async () =>
      // Per key, shards folded (the triggers spread concurrent writers over shards; readers sum them).
      (
        await db.raw(
          `SELECT application_id, day, channel, subscription_type, template_id,
                  ${[...MESSAGE_COUNTERS, "failed_after_sent"].map((c) => `sum(${c})::int AS ${c}`).join(", ")}
             FROM message_stats_daily WHERE application_id = ?
            GROUP BY 1, 2, 3, 4, 5 ORDER BY day, channel, subscription_type, template_id`,
          [a.id],
        )
      ).rows.map((r: Record<string, unknown>) => ({
        ...r,
        day: String(r.day),
      }));
    const before = await snapshot();
    assert.ok(before.length > 0);
    await db.raw(`SELECT analytics_backfill(?::uuid)`, [a.id]);
    assert.deepEqual(await snapshot(), before);
  });
});

describe("openapi", () => {
  test("the analytics routes are documented with their query parameters", async () => {
    const res = await app.request("GET", "/openapi.json");
    assert.equal(res.status, 200);
    const paths = res.body.paths as Record<string, { get?: { parameters?: Array<{ name: string }> } }>;
    for (const path of ["/analytics/messages", "/analytics/subscriptions", "/analytics/engagement", "/analytics/usage", "/analytics/devices"]) {
      assert.ok(paths[path]?.get, path);
    }
    const names = (paths["/analytics/messages"]!.get!.parameters ?? []).map((p) => p.name).sort();
    assert.deepEqual(names, ["channel_type", "from", "group_by", "to"]);
  });
});

describe("GET /analytics/usage default range", () => {
  test("a zone whose date is not UTC's: a message sent now is counted, on the UTC day it falls on, and no later day is shown", async () => {
    // A zone whose local date differs from the UTC date right now (UTC−12 before noon UTC, UTC+14 from 10:00 UTC):
    // the old default took the local dates, which the UTC-day rollup does not have.
    const utcHour = new Date().getUTCHours();
    const timezone = utcHour < 12 ? "Etc/GMT+12" : "Etc/GMT-14";
    const c = await app.createApplication({ timezone });
    await app.deps.db("messages").insert({ id: newId(), application_id: c.id, channel: "push", body: "now", created_at: new Date(), status: "successful", sent_at: new Date() });
    const data = await get(c.apiKey, "/analytics/usage");
    const utcToday = new Date().toISOString().slice(0, 10);
    assert.deepEqual(data.usage_by_channel, { push: 1 }, JSON.stringify(data));
    assert.equal(data.usage_trend.at(-1).date, utcToday);
    assert.equal(data.usage_trend.at(-1).total, 1);
    assert.deepEqual(data.period, { from: `${data.current_period.start_date.slice(0, 10)}T00:00:00Z`, to: `${utcToday}T23:59:59Z` });
    assert.equal(data.usage_trend.reduce((sum: number, row: { total: number }) => sum + row.total, 0), 1);
  });
});
