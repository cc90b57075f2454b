import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { WorkflowNotFoundError } from "@temporalio/client";
import { Worker } from "@temporalio/worker";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { createPushSubscription, seedPushSubscriptions, type SeedOptions } from "../../test/support/fixtures";
import { newId } from "../db/ids";
import { ledgerInvariant, quotaStatus } from "../quota/quota";
import { messageWorkflowId } from "../../workflows/message";
import { campaignWorkflowId, progressQuery } from "../../workflows/campaign";
import { audienceQuery, parseTargetingCriteria } from "./targeting";
import { campaignCounts, campaignCountsBySubscriptionType } from "./repository";
import { MESSAGE_STATUSES } from "../messages/state-machine";
import { startCampaignWorkflow } from "./workflow-client";
import { insertRunningCampaign, startTestCampaignWorkflow } from "../../test/support/campaigns";
import type { CampaignRow } from "./repository";

// Receipt window and retry backoffs shrunk so a campaign's whole lifecycle runs in seconds.
const TIMING = { AUTOMATA_RECEIPT_TIMEOUT: "3s", AUTOMATA_RETRY_SCALE: "0.0001" };

let app: TestApp;

before(async () => {
  app = await startTestApp({ worker: true, env: TIMING });
});
after(async () => {
  await app.close();
});

function createApp(body: Record<string, unknown> = {}) {
  return app.createApplication({ rate_limit_tier: "enterprise", ...body });
}

/** Seeds push subscriptions straight into PostgreSQL; returns their ids. */
function seed(applicationId: string, count: number, options: SeedOptions = {}): Promise<string[]> {
  return seedPushSubscriptions(app, applicationId, count, options);
}

async function createCampaign(key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return app.request("POST", "/campaigns", { key, body: { name: `c-${newId()}`, title: "Hello", body: "Campaign", ...body }, headers });
}

async function campaignOf(key: string, id: string) {
  const res = await app.request("GET", `/campaigns/${id}`, { key });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data;
}

async function waitForCampaign(key: string, id: string, status: string, timeoutMs = 60_000) {
  return eventually(async () => {
    const c = await campaignOf(key, id);
    return c.status === status ? c : undefined;
  }, timeoutMs, 200);
}

async function messageStatuses(campaignId: string): Promise<Record<string, number>> {
  const rows = (await app.deps.db("messages").where("campaign_id", campaignId).groupBy("status").select("status", app.deps.db.raw("count(*)::int as n"))) as Array<{ status: string; n: number }>;
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** The trigger-kept counts equal a count of the campaign's messages, status by status. */
async function assertCountsMatchMessages(campaignId: string): Promise<void> {
  const counted = await campaignCounts(app.deps.db, campaignId);
  const actual = await messageStatuses(campaignId);
  for (const status of MESSAGE_STATUSES) {
    assert.equal(counted[status], actual[status] ?? 0, `${status} count of campaign ${campaignId}`);
  }
  assert.equal(counted.total, Object.values(actual).reduce((a, b) => a + b, 0));
  // The same counts kept per subscription type.
  const byType = await campaignCountsBySubscriptionType(app.deps.db, campaignId);
  const rows = (await app.deps.db("messages").where("campaign_id", campaignId).groupBy("subscription_type", "status").select("subscription_type", "status", app.deps.db.raw("count(*)::int AS n"))) as Array<{ subscription_type: string; status: string; n: number }>;
  assert.deepEqual([...byType.keys()].sort(), [...new Set(rows.map((r) => r.subscription_type))].sort());
  for (const row of rows) assert.equal(byType.get(row.subscription_type)![row.status as (typeof MESSAGE_STATUSES)[number]], row.n, `${row.subscription_type} ${row.status} count of campaign ${campaignId}`);
}

async function statsOf(key: string, id: string) {
  const res = await app.request("GET", `/campaigns/${id}/stats`, { key });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data;
}

describe("campaign execution", () => {
  test("1,200 recipients: one message each, all sent in batches, stats, receipts and expiry", async () => {
    const { id: appId, apiKey } = await createApp();
    const subscriptionIds = await seed(appId, 1_200);
    const created = await createCampaign(apiKey, { data: { promo: "spring" }, badge: 1 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.data.status, "in_progress");
    const id = created.body.data.campaign_id;

    // A receipt for a campaign message goes through the message API (no per-message workflow),
    // sent as soon as one is accepted by the provider: well inside its 3 s receipt window.
    const first = await eventually(async () => (await app.deps.db("messages").where({ campaign_id: id, status: "successful" }).first("id")) as { id: string } | undefined, 30_000, 25);
    const receipt = await app.request("POST", `/messages/${first.id}/status`, { key: apiKey, body: { status: "received" } });
    assert.equal(receipt.status, 200, JSON.stringify(receipt.body));
    // The user then opens it: the campaign's conversion figures come from the same message API.
    const conversion = await app.request("POST", `/messages/${first.id}/convert`, { key: apiKey, body: { action: "opened" } });
    assert.deepEqual([conversion.status, conversion.body.data?.status], [200, "converted"], JSON.stringify(conversion.body));
    const received = 1;

    const done = await waitForCampaign(apiKey, id, "completed");
    assert.ok(done.started_at && done.completed_at);
    const messages = (await app.deps.db("messages").where("campaign_id", id).select("id", "subscription_id", "sent_at", "attempts", "status", "error_code", "title", "data")) as Array<{
      id: string;
      subscription_id: string;
      sent_at: Date | null;
      attempts: number;
      status: string;
      error_code: string | null;
      title: string;
      data: Record<string, unknown>;
    }>;
    assert.equal(messages.length, 1_200);
    assert.deepEqual(new Set(messages.map((m) => m.subscription_id)), new Set(subscriptionIds), "every recipient got exactly one message");
    for (const m of messages) {
      assert.ok(m.sent_at, "accepted by the provider");
      assert.equal(m.attempts, 1);
      if (m.id === first.id) assert.equal(m.status, "converted");
      else assert.ok(m.status === "successful" || (m.status === "failed" && m.error_code === "receipt_timeout"), `${m.status} ${m.error_code}`);
      assert.equal(m.title, "Hello");
      assert.deepEqual(m.data, { promo: "spring" });
    }

    await assert.rejects(app.deps.temporal.workflow.getHandle(messageWorkflowId(first.id)).describe(), WorkflowNotFoundError);

    // Batches share the campaign's search attribute: 1 campaign + 3 batches (500, 500, 200).
    await eventually(async () => (await app.deps.temporal.workflow.count(`CampaignId = "${id}"`)).count === 4, 20_000, 500);
    const progress = await app.deps.temporal.workflow.getHandle(campaignWorkflowId(id)).query(progressQuery);
    assert.equal(progress.batchesStarted, 3);
    assert.equal(progress.messages, 1_200);

    // After the receipt window every message without a receipt fails with receipt_timeout, but it
    // was accepted by the provider: the stats still count it successful, just not received.
    await eventually(async () => ((await messageStatuses(id)).successful ?? 0) === 0, 20_000, 250);
    assert.equal((await messageStatuses(id)).failed, 1_200 - received);
    const stats = await statsOf(apiKey, id);
    assert.equal(stats.status, "completed");
    assert.equal(stats.total_recipients, 1_200);
    assert.equal(stats.received_count, received);
    assert.equal(stats.successful_count, 1_200);
    assert.equal(stats.failed_count, 0);
    assert.equal(stats.remaining, 0);
    assert.equal(stats.channel_stats.push.total, 1_200);
    assert.equal(stats.delivery_rate, 100);
    // Seeded alternately iOS and Android: the report's per-platform figures.
    assert.deepEqual(Object.keys(stats.by_subscription_type).sort(), ["AndroidPush", "iOSPush"]);
    for (const type of ["AndroidPush", "iOSPush"]) {
      const figures = stats.by_subscription_type[type];
      assert.deepEqual([figures.total, figures.successful, figures.failed, figures.delivery_rate], [600, 600, 0, 100], type);
    }
    assert.equal(stats.by_subscription_type.iOSPush.received + stats.by_subscription_type.AndroidPush.received, received);
    assert.equal(stats.receive_rate, Math.round((received / 1_200) * 10_000) / 100);
    // The one received message was also opened: converted, and counted received too.
    assert.deepEqual([stats.converted_count, stats.channel_stats.push.converted, stats.channel_stats.push.received, stats.conversion_rate], [1, 1, 1, 100]);
    assert.deepEqual([stats.started_at, stats.completed_at], [done.started_at, done.completed_at]);
    await assertCountsMatchMessages(id);
    assert.equal((await campaignCounts(app.deps.db, id)).failed_after_sent, 1_200 - received);
    const view = await campaignOf(apiKey, id);
    assert.deepEqual([view.total_recipients, view.successful_count, view.failed_count], [1_200, 1_200, 0]);
    for (const r of await ledgerInvariant(app.deps.db)) assert.equal(r.sum, 0, `ledger balances of ${r.unit} sum to zero`);
  });

  test("10% gone tokens fail, their subscriptions move to -10, and their quota is refunded", async () => {
    const { id: appId, apiKey } = await createApp({ quota: { daily_quota: 1_000 } });
    const ids = await seed(appId, 100, { prefix: (i) => (i % 10 === 0 ? "gone" : "ok") });
    const gone = ids.filter((_, i) => i % 10 === 0);
    const created = await createCampaign(apiKey, {});
    const id = created.body.data.campaign_id;
    await waitForCampaign(apiKey, id, "completed");
    const failed = (await app.deps.db("messages").where({ campaign_id: id }).whereNull("sent_at").select("subscription_id", "status", "error_code")) as Array<{ subscription_id: string; status: string; error_code: string }>;
    assert.equal(failed.length, 10);
    assert.deepEqual(new Set(failed.map((f) => f.subscription_id)), new Set(gone));
    for (const f of failed) assert.equal(f.status, "failed");
    const statuses = (await app.deps.db("subscriptions").whereIn("id", gone).pluck("subscription_status")) as number[];
    assert.deepEqual([...new Set(statuses)], [-10]);
    const events = await app.deps.db("subscription_events").whereIn("subscription_id", gone).count({ n: "*" });
    assert.equal(Number(events[0]!.n), 10);
    const quota = await quotaStatus(app.deps.db, appId);
    assert.equal(quota.daily!.used, 90, "the batch debit of 100 minus the 10 never-accepted");
    // The campaign's messages filtered by status: exactly the ten that failed.
    const failedPage = await app.request("GET", `/campaigns/${id}/messages?status=failed&per_page=100`, { key: apiKey });
    assert.equal(failedPage.status, 200, JSON.stringify(failedPage.body));
    assert.equal(failedPage.body.data.pagination.total_items, 10);
    assert.deepEqual(new Set(failedPage.body.data.messages.map((m: { subscription_id: string }) => m.subscription_id)), new Set(gone));
    assert.ok(failedPage.body.data.messages.every((m: { status: string }) => m.status === "failed"));
    // DESIGN-005's report counts uninstalls ("앱 삭제"): the failures with error_code unregistered.
    const uninstalled = await app.request("GET", `/campaigns/${id}/messages?error_code=unregistered&per_page=1`, { key: apiKey });
    assert.equal(uninstalled.status, 200, JSON.stringify(uninstalled.body));
    assert.equal(uninstalled.body.data.pagination.total_items, 10);
    const other = await app.request("GET", `/campaigns/${id}/messages?error_code=quota_exceeded`, { key: apiKey });
    assert.equal(other.body.data.pagination.total_items, 0);
  });

  test("quota exhausted: the batch fails with quota_exceeded and nothing is sent", async () => {
    const { id: appId, apiKey } = await createApp({ quota: { daily_quota: 50 } });
    await seed(appId, 80);
    const id = (await createCampaign(apiKey, {})).body.data.campaign_id;
    await waitForCampaign(apiKey, id, "completed");
    const rows = (await app.deps.db("messages").where("campaign_id", id).select("status", "error_code", "sent_at")) as Array<{ status: string; error_code: string; sent_at: Date | null }>;
    assert.equal(rows.length, 80);
    for (const r of rows) assert.deepEqual([r.status, r.error_code, r.sent_at], ["failed", "quota_exceeded", null]);
    assert.equal((await quotaStatus(app.deps.db, appId)).daily!.used, 0);
  });

  test("temporary failures retry on timers: flaky tokens succeed on the 2nd attempt, down tokens exhaust and are refunded", async () => {
    const { id: appId, apiKey } = await createApp({ quota: { daily_quota: 1_000 } });
    const kinds = ["ok", "flaky", "down"] as const;
    const ids = await seed(appId, 30, { prefix: (i) => kinds[Math.floor(i / 10)]! });
    const id = (await createCampaign(apiKey, {})).body.data.campaign_id;
    await waitForCampaign(apiKey, id, "completed", 90_000);
    const rows = (await app.deps.db("messages").where("campaign_id", id).select("subscription_id", "status", "error_code", "attempts", "sent_at")) as Array<{
      subscription_id: string;
      status: string;
      error_code: string | null;
      attempts: number;
      sent_at: Date | null;
    }>;
    const kindOf = new Map(ids.map((sid, i) => [sid, kinds[Math.floor(i / 10)]!]));
    for (const r of rows) {
      const kind = kindOf.get(r.subscription_id);
      if (kind === "ok") assert.equal(r.attempts, 1);
      if (kind === "flaky") assert.equal(r.attempts, 2);
      if (kind === "down") {
        assert.deepEqual([r.status, r.error_code, r.sent_at], ["failed", "retries_exhausted", null]);
        assert.equal(r.attempts, 24, "the first attempt plus 23 provider_outage retries");
      } else assert.ok(r.sent_at);
    }
    assert.equal((await quotaStatus(app.deps.db, appId)).daily!.used, 20);
    const rejected = await createCampaign((await createApp({ quota: { daily_quota: 0 } })).apiKey, {});
    assert.equal(rejected.status, 403);
    assert.equal(rejected.body.error.code, "quota_exceeded");
  });

  test("cancel mid-campaign: no new batches, unsent messages cancelled and refunded", async () => {
    const { id: appId, apiKey } = await createApp({ quota: { daily_quota: 10_000 } });
    await seed(appId, 700, { prefix: () => "slow" });
    // 1,500/min: pages of 250 (10 s of the rate each; slow tokens make one take ~6 s in chunks of
    // 100), and the second page waits ~10 s after the first (cancel wakes it).
    const id = (await createCampaign(apiKey, { throttle_per_minute: 1_500 })).body.data.campaign_id;
    // Cancel as soon as the first batch has created its messages, while they are being sent.
    await eventually(async () => Object.keys(await messageStatuses(id)).length > 0, 30_000, 50);
    const cancelled = await app.request("POST", `/campaigns/${id}/cancel`, { key: apiKey });
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    assert.equal(cancelled.body.data.status, "cancelled");
    assert.ok(cancelled.body.data.cancelled_at);
    await eventually(async () => {
      const s = await messageStatuses(id);
      return (s.pending ?? 0) + (s.errored ?? 0) === 0 && (s.cancelled ?? 0) > 0 ? s : undefined;
    }, 30_000, 200);
    await eventually(async () => {
      const description = await app.deps.temporal.workflow.getHandle(campaignWorkflowId(id)).describe();
      return description.status.name === "COMPLETED";
    }, 30_000, 200);
    const rows = (await app.deps.db("messages").where("campaign_id", id).select("status", "sent_at")) as Array<{ status: string; sent_at: Date | null }>;
    assert.ok(rows.length <= 250, `only the first page was created (${rows.length})`);
    for (const r of rows) if (r.status === "cancelled") assert.equal(r.sent_at, null);
    const accepted = rows.filter((r) => r.sent_at).length;
    // Every cancelled message's unit comes back once its batch settles.
    await eventually(async () => (await quotaStatus(app.deps.db, appId)).daily!.used === accepted, 30_000, 250);
    assert.equal((await campaignOf(apiKey, id)).status, "cancelled");
    await assertCountsMatchMessages(id);
    const again = await app.request("POST", `/campaigns/${id}/execute`, { key: apiKey });
    assert.equal(again.status, 400);
    assert.equal(again.body.error.code, "campaign_already_completed");
  });

  test("pause stops new batches; resume finishes the audience", async () => {
    const { id: appId, apiKey } = await createApp();
    await seed(appId, 1_100);
    // ~1 s between pages, so the pause lands between batches.
    const id = (await createCampaign(apiKey, { throttle_per_minute: 30_000 })).body.data.campaign_id;
    const paused = await app.request("POST", `/campaigns/${id}/pause`, { key: apiKey });
    assert.equal(paused.status, 200, JSON.stringify(paused.body));
    assert.equal(paused.body.data.status, "paused");
    const handle = app.deps.temporal.workflow.getHandle(campaignWorkflowId(id));
    await eventually(async () => (await handle.query(progressQuery)).paused, 10_000, 100);
    const before = (await handle.query(progressQuery)).batchesStarted;
    await new Promise((r) => setTimeout(r, 2_500));
    const during = await handle.query(progressQuery);
    assert.equal(during.batchesStarted, before, "no batch starts while paused");
    assert.ok(before < 3);
    assert.equal((await campaignOf(apiKey, id)).status, "paused");
    // Idempotent, like cancel: pausing a paused campaign answers it again.
    const again = await app.request("POST", `/campaigns/${id}/pause`, { key: apiKey });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    assert.equal(again.body.data.status, "paused");
    assert.equal((await handle.query(progressQuery)).batchesStarted, before);
    // Execute on a paused campaign: it has started (REF-001 §8.3); resume is how it goes on.
    const executed = await app.request("POST", `/campaigns/${id}/execute`, { key: apiKey });
    assert.deepEqual([executed.status, executed.body.error.code, executed.body.error.details.status], [400, "campaign_already_started", "paused"], JSON.stringify(executed.body));
    assert.match(executed.body.error.message, /resume it/);
    assert.equal((await campaignOf(apiKey, id)).status, "paused", "and it stays paused");

    const resumed = await app.request("POST", `/campaigns/${id}/resume`, { key: apiKey });
    assert.equal(resumed.status, 200, JSON.stringify(resumed.body));
    assert.equal(resumed.body.data.status, "in_progress");
    const resumedAgain = await app.request("POST", `/campaigns/${id}/resume`, { key: apiKey });
    assert.equal(resumedAgain.status, 200, JSON.stringify(resumedAgain.body));
    assert.equal(resumedAgain.body.data.status, "in_progress");
    await waitForCampaign(apiKey, id, "completed");
    const count = await app.deps.db("messages").where("campaign_id", id).count({ n: "*" });
    assert.equal(Number(count[0]!.n), 1_100);
  });

  test("campaign activities have a pool of their own: with every campaign connection held, single messages still go out and the campaign waits", { timeout: 90_000 }, async () => {
    const isolated = await startTestApp({ worker: true, env: { ...TIMING, AUTOMATA_CAMPAIGN_DB_POOL_MAX: "1" } });
    try {
      const { id: appId, apiKey } = await isolated.createApplication({ rate_limit_tier: "enterprise" });
      await seedPushSubscriptions(isolated, appId, 5);
      // What a campaign's batches do under load: hold every connection of the campaign pool.
      const held = await isolated.deps.campaignDb!.transaction();
      let campaignId: string;
      try {
        const sub = await createPushSubscription(isolated, apiKey);
        const sent = await isolated.request("POST", "/messages", { key: apiKey, body: { subscription_id: sub.id, body: "urgent" } });
        assert.equal(sent.status, 201, JSON.stringify(sent.body));
        await eventually(async () => (await isolated.deps.db("messages").where("id", sent.body.data.message_id).first("status")).status === "successful", 20_000, 100);
        const created = await isolated.request("POST", "/campaigns", { key: apiKey, body: { name: "waits", title: "t", body: "b" } });
        assert.equal(created.status, 201, JSON.stringify(created.body));
        campaignId = created.body.data.campaign_id;
        await new Promise((r) => setTimeout(r, 1_500));
        assert.equal((await isolated.deps.db("messages").where("campaign_id", campaignId)).length, 0, "the campaign has no connection to create its messages with");
      } finally {
        await held.rollback();
      }
      // Released, it goes on: every subscription of the application (the five and the single message's) gets its message.
      await eventually(async () => (await isolated.deps.db("message_campaigns").where("id", campaignId).first("status")).status === "completed", 30_000, 200);
      assert.equal((await isolated.deps.db("messages").where("campaign_id", campaignId)).length, 6);
    } finally {
      await isolated.close();
    }
  });

  test("a deactivated application's campaign starts no batch until the application is active again, then finishes", async () => {
    const { id: appId, apiKey } = await createApp();
    await seed(appId, 25);
    const id = await insertRunningCampaign(app, appId, "held", {});
    const deactivate = (isActive: boolean) => app.request("PATCH", `/admin/applications/${appId}`, { admin: true, body: { is_active: isActive } });
    assert.equal((await deactivate(false)).status, 200);
    const handle = await startTestCampaignWorkflow(app, { campaignId: id, applicationId: appId }, { timing: { receiptTimeoutMs: 3_000, retryScale: 0.0001, pendingTimeoutMs: 3_600_000 }, pageSize: 10, window: 2, statusPollMs: 300 });
    await eventually(async () => (await handle.query(progressQuery)).paused, 10_000, 100);
    await new Promise((r) => setTimeout(r, 1_500));
    const held = await handle.query(progressQuery);
    assert.equal(held.batchesStarted, 0, "no batch while the application is deactivated");
    assert.equal((await app.deps.db("messages").where("campaign_id", id)).length, 0);
    // Its owner's key is refused meanwhile, so the owner could not have paused it.
    assert.equal((await app.request("POST", `/campaigns/${id}/pause`, { key: apiKey })).status, 403);
    assert.equal((await deactivate(true)).status, 200);
    const result = await handle.result();
    assert.equal(result.messages, 25);
    assert.equal((await app.deps.db("messages").where("campaign_id", id)).length, 25);
  });

  test("small pages: keyset paging across continue-as-new with a bounded window", async () => {
    const { id: appId } = await createApp();
    const ids = await seed(appId, 47);
    const id = await insertRunningCampaign(app, appId, "paged", {});
    // Pages of 10 (5 batches), 2 sending at once, and a new run every 2 batches.
    const handle = await startTestCampaignWorkflow(app, { campaignId: id, applicationId: appId }, { timing: { receiptTimeoutMs: 3_000, retryScale: 0.0001, pendingTimeoutMs: 3_600_000 }, pageSize: 10, window: 2, batchesPerRun: 2 });
    const result = await handle.result();
    assert.equal(result.batchesStarted, 5);
    assert.equal(result.messages, 47);
    assert.equal(result.recipientsPaged, 47);
    assert.deepEqual(result.inFlight, []);
    assert.notEqual((await handle.describe()).runId, handle.firstExecutionRunId, "the campaign continued as new");
    const targeted = (await app.deps.db("messages").where("campaign_id", id).pluck("subscription_id")) as string[];
    assert.equal(targeted.length, 47);
    assert.deepEqual(new Set(targeted), new Set(ids));
    assert.equal((await app.deps.db("message_campaigns").where("id", id).first()).status, "completed");
    // The campaign and batch code replays its own histories (determinism check).
    const workflowsPath = require.resolve("../../workflows");
    await Worker.runReplayHistory({ workflowsPath }, await app.deps.temporal.workflow.getHandle(campaignWorkflowId(id)).fetchHistory(), campaignWorkflowId(id));
    await Worker.runReplayHistory({ workflowsPath }, await app.deps.temporal.workflow.getHandle(`campaign-${id}-batch-0`).fetchHistory(), `campaign-${id}-batch-0`);
  });

  test("scheduled in the future waits; execute starts it early", async () => {
    const { id: appId, apiKey } = await createApp();
    await seed(appId, 20);
    const scheduledAt = new Date(Date.now() + 3_600_000).toISOString();
    const created = await createCampaign(apiKey, { scheduled_at: scheduledAt });
    assert.equal(created.body.data.status, "scheduled");
    assert.equal(created.body.data.scheduled_at, scheduledAt);
    const id = created.body.data.campaign_id;
    await new Promise((r) => setTimeout(r, 1_000));
    assert.deepEqual(await messageStatuses(id), {});
    const resume = await app.request("POST", `/campaigns/${id}/resume`, { key: apiKey });
    assert.equal(resume.status, 409);
    assert.equal(resume.body.error.code, "invalid_status_transition");
    const pause = await app.request("POST", `/campaigns/${id}/pause`, { key: apiKey });
    assert.equal(pause.status, 409, "a scheduled campaign cannot be paused (cancel it, or execute it)");
    assert.equal(pause.body.error.code, "invalid_status_transition");

    const executed = await app.request("POST", `/campaigns/${id}/execute`, { key: apiKey });
    assert.equal(executed.status, 200, JSON.stringify(executed.body));
    assert.equal(executed.body.data.status, "in_progress");
    assert.ok(executed.body.data.started_at);
    const twice = await app.request("POST", `/campaigns/${id}/execute`, { key: apiKey });
    assert.equal(twice.status, 400);
    assert.ok(["campaign_already_started", "campaign_already_completed"].includes(twice.body.error.code));
    // Refusals speak REF-001's names too.
    assert.ok(["in_progress", "completed"].includes(twice.body.error.details.status), JSON.stringify(twice.body.error));
    await waitForCampaign(apiKey, id, "completed");
    assert.equal(Object.values(await messageStatuses(id)).reduce((a, b) => a + b, 0), 20);
  });

  test("a scheduled_at in the past starts at once", async () => {
    const { id: appId, apiKey } = await createApp();
    await seed(appId, 3);
    const created = await createCampaign(apiKey, { scheduled_at: new Date(Date.now() - 60_000).toISOString() });
    assert.equal(created.body.data.status, "in_progress");
    await waitForCampaign(apiKey, created.body.data.campaign_id, "completed");
  });

  test("an empty audience completes with 0 recipients", async () => {
    const { id: appId, apiKey } = await createApp();
    await seed(appId, 5);
    const id = (await createCampaign(apiKey, { targeting_criteria: { tags: { nobody: "has-this" } } })).body.data.campaign_id;
    const done = await waitForCampaign(apiKey, id, "completed");
    assert.equal(done.total_recipients, 0);
    const stats = await statsOf(apiKey, id);
    assert.equal(stats.total_recipients, 0);
    assert.equal(stats.delivery_rate, 0);
    // Ended: a cancel or an execute is refused with the contract's code, and changes nothing.
    for (const action of ["cancel", "execute"]) {
      const refused = await app.request("POST", `/campaigns/${id}/${action}`, { key: apiKey });
      assert.equal(refused.status, 400, `${action}: ${JSON.stringify(refused.body)}`);
      assert.equal(refused.body.error.code, "campaign_already_completed", action);
    }
    assert.equal((await campaignOf(apiKey, id)).status, "completed");
  });

  test("tags any-of targets only matching subscriptions; estimate matches a direct count", async () => {
    const { id: appId, apiKey } = await createApp();
    const levels = ["silver", "gold", "bronze"];
    const ids = await seed(appId, 90, { tags: (i) => ({ level: levels[i % 3]!, ...(i % 2 === 0 ? { vip: "1" } : {}) }) });
    const criteria = { tags: { level: ["silver", "gold"], vip: "1" } };
    const expected = ids.filter((_, i) => i % 3 !== 2 && i % 2 === 0);

    const estimate = await app.request("POST", "/campaigns/estimate", { key: apiKey, body: { targeting_criteria: criteria } });
    assert.equal(estimate.status, 200, JSON.stringify(estimate.body));
    assert.equal(estimate.body.data.total, expected.length);
    // Even indexes are iOS in seed(): every vip is iOS.
    assert.deepEqual(estimate.body.data.by_subscription_type, { iOSPush: expected.length });
    const direct = await audienceQuery(app.deps.db, appId, parseTargetingCriteria(criteria)).count({ n: "*" });
    assert.equal(Number(direct[0]!.n), expected.length);
    const raw = await app.deps.db.raw(
      `select count(*)::int as n from subscriptions where application_id = ? and subscription_status > 0 and (tags->>'level' in ('silver','gold')) and tags->>'vip' = '1'`,
      [appId],
    );
    assert.equal(raw.rows[0].n, expected.length);

    const id = (await createCampaign(apiKey, { targeting_criteria: criteria })).body.data.campaign_id;
    await waitForCampaign(apiKey, id, "completed");
    const targeted = (await app.deps.db("messages").where("campaign_id", id).pluck("subscription_id")) as string[];
    assert.deepEqual(new Set(targeted), new Set(expected));
    const page = await app.request("GET", `/campaigns/${id}/messages?per_page=5`, { key: apiKey });
    assert.equal(page.status, 200);
    assert.equal(page.body.data.messages.length, 5);
    assert.equal(page.body.data.pagination.total_items, expected.length);
  });
});

describe("campaign API", () => {
  test("bad criteria → invalid_targeting_criteria naming the field", async () => {
    const { apiKey } = await createApp();
    const res = await createCampaign(apiKey, { targeting_criteria: { segment: "all" } });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, "invalid_targeting_criteria");
    assert.equal(res.body.error.details.field, "targeting_criteria.segment");
    const estimate = await app.request("POST", "/campaigns/estimate", { key: apiKey, body: { targeting_criteria: { countries: "KR" } } });
    assert.equal(estimate.status, 400);
    assert.equal(estimate.body.error.details.field, "targeting_criteria.countries");
    // An empty tag map is refused like an empty list, not read as "everyone".
    for (const [path, body] of [["/campaigns", { name: "empty tags", title: "t", body: "b" }], ["/campaigns/estimate", {}]] as const) {
      const empty = await app.request("POST", path, { key: apiKey, body: { ...body, targeting_criteria: { tags: {} } } });
      assert.equal(empty.status, 400, path);
      assert.equal(empty.body.error.code, "invalid_targeting_criteria", path);
      assert.equal(empty.body.error.details.field, "targeting_criteria.tags", path);
    }
    assert.equal((await app.request("GET", "/campaigns", { key: apiKey })).body.data.campaigns.length, 0, "nothing was created");
  });

  test("another tenant's campaign is campaign_not_found", async () => {
    const a = await createApp();
    const b = await createApp();
    const id = (await createCampaign(a.apiKey, { scheduled_at: new Date(Date.now() + 3_600_000).toISOString() })).body.data.campaign_id;
    for (const [method, path] of [
      ["GET", `/campaigns/${id}`],
      ["GET", `/campaigns/${id}/stats`],
      ["GET", `/campaigns/${id}/messages`],
      ["POST", `/campaigns/${id}/execute`],
      ["POST", `/campaigns/${id}/cancel`],
      ["POST", `/campaigns/${id}/pause`],
      ["POST", `/campaigns/${id}/resume`],
    ] as const) {
      const res = await app.request(method, path, { key: b.apiKey });
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal(res.body.error.code, "campaign_not_found");
    }
    const list = await app.request("GET", "/campaigns", { key: b.apiKey });
    assert.equal(list.body.data.pagination.total_items, 0);
    const cancel = await app.request("POST", `/campaigns/${id}/cancel`, { key: a.apiKey });
    assert.equal(cancel.body.data.status, "cancelled");
    assert.equal((await app.request("POST", `/campaigns/${id}/cancel`, { key: a.apiKey })).status, 200, "cancel is idempotent");
  });

  test("Idempotency-Key returns the first campaign; list filters by status", async () => {
    const { apiKey } = await createApp();
    const body = { scheduled_at: new Date(Date.now() + 3_600_000).toISOString(), name: "same" };
    const first = await createCampaign(apiKey, body, { "Idempotency-Key": "k-1" });
    const second = await createCampaign(apiKey, body, { "Idempotency-Key": "k-1" });
    assert.equal(first.status, 201);
    assert.equal(second.body.data.campaign_id, first.body.data.campaign_id);
    const list = await app.request("GET", "/campaigns?status=scheduled", { key: apiKey });
    assert.equal(list.body.data.pagination.total_items, 1);
    assert.equal(list.body.data.campaigns[0].id, first.body.data.campaign_id);
    const none = await app.request("GET", "/campaigns?status=completed", { key: apiKey });
    assert.equal(none.body.data.pagination.total_items, 0);
    const detail = await campaignOf(apiKey, first.body.data.campaign_id);
    assert.equal(detail.title, "Hello");
    assert.deepEqual(detail.targeting_criteria, {});
    await app.request("POST", `/campaigns/${first.body.data.campaign_id}/cancel`, { key: apiKey });
    const handle = app.deps.temporal.workflow.getHandle(campaignWorkflowId(first.body.data.campaign_id));
    await eventually(async () => (await handle.describe()).status.name === "COMPLETED", 15_000, 200);
    const runId = (await handle.describe()).runId;
    const replay = await createCampaign(apiKey, body, { "Idempotency-Key": "k-1" });
    assert.equal(replay.status, 201, JSON.stringify(replay.body));
    assert.equal(replay.body.data.campaign_id, first.body.data.campaign_id);
    assert.equal(replay.body.data.status, "cancelled");
    assert.equal((await handle.describe()).runId, runId, "a replay does not run a finished campaign again");
  });

  test("scheduled_at more than two years ahead, or an instant whose offset carries it past 9999, is a 422 naming it; nothing is created", async () => {
    const { apiKey } = await createApp();
    const cases = [new Date(Date.now() + 731 * 86_400_000).toISOString(), "9999-12-31T23:59:59-23:59", "1969-12-31T23:59:59Z"];
    for (const scheduledAt of cases) {
      const res = await createCampaign(apiKey, { scheduled_at: scheduledAt });
      assert.equal(res.status, 422, `${scheduledAt}: ${JSON.stringify(res.body)}`);
      assert.ok("scheduled_at" in res.body.error.details.fields, JSON.stringify(res.body.error));
    }
    const nearLimit = await createCampaign(apiKey, { scheduled_at: new Date(Date.now() + 729 * 86_400_000).toISOString() });
    assert.equal(nearLimit.status, 201, JSON.stringify(nearLimit.body));
    assert.equal((await app.request("POST", `/campaigns/${nearLimit.body.data.campaign_id}/cancel`, { key: apiKey })).status, 200);
  });

  test("the list: a created_at window (from inclusive, to exclusive) and pages", async () => {
    const { apiKey } = await createApp();
    const later = new Date(Date.now() + 3_600_000).toISOString();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await createCampaign(apiKey, { scheduled_at: later })).body.data.campaign_id);
    await app.deps.db("message_campaigns").where("id", ids[0]).update({ created_at: new Date("2026-01-01T00:00:00Z") });
    await app.deps.db("message_campaigns").where("id", ids[1]).update({ created_at: new Date("2026-02-01T00:00:00Z") });
    const listed = async (query: string) => {
      const res = await app.request("GET", `/campaigns?${query}`, { key: apiKey });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.data as { campaigns: Array<{ id: string }>; pagination: { total_items: number; total_pages: number; page: number } };
    };
    const january = await listed("from=2026-01-01T00:00:00Z&to=2026-02-01T00:00:00Z");
    assert.deepEqual(january.campaigns.map((c) => c.id), [ids[0]]);
    const sinceFebruary = await listed("from=2026-02-01T00:00:00Z");
    assert.deepEqual(new Set(sinceFebruary.campaigns.map((c) => c.id)), new Set([ids[1], ids[2]]));
    const first = await listed("per_page=2");
    const second = await listed("per_page=2&page=2");
    assert.deepEqual([first.pagination.total_items, first.pagination.total_pages, first.campaigns.length], [3, 2, 2]);
    assert.equal(second.campaigns.length, 1);
    assert.deepEqual(new Set([...first.campaigns, ...second.campaigns].map((c) => c.id)), new Set(ids), "the two pages hold every campaign once");
    for (const id of ids) await app.request("POST", `/campaigns/${id}/cancel`, { key: apiKey });
  });

  test("template campaigns render once with the campaign variables", async () => {
    const { id: appId, apiKey } = await createApp();
    await seed(appId, 4);
    const template = await app.request("POST", "/templates", {
      key: apiKey,
      body: { name: `t-${newId()}`, title_template: "Hi {{promo}}", body_template: "{{discount}} off", variables: [{ name: "promo", required: true }] },
    });
    assert.equal(template.status, 201, JSON.stringify(template.body));
    const templateId = template.body.data.template_id ?? template.body.data.id;
    const missing = await app.request("POST", "/campaigns", { key: apiKey, body: { name: "t", template_id: templateId } });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error.code, "missing_required_variable");
    const created = await app.request("POST", "/campaigns", { key: apiKey, body: { name: "t", template_id: templateId, variables: { promo: "Spring", discount: "20%" } } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.data.campaign_id;
    const view = await waitForCampaign(apiKey, id, "completed");
    assert.deepEqual([view.template_id, view.template_version, view.variables], [templateId, 1, { promo: "Spring", discount: "20%" }]);
    // Who created it, by the key's id: never the key itself.
    assert.match(view.created_by, /^api_key:[0-9a-f-]{36}$/);
    assert.ok(!view.created_by.includes(apiKey));
    const rows = (await app.deps.db("messages").where("campaign_id", id).select("title", "body", "template_id", "template_version")) as Array<Record<string, unknown>>;
    assert.equal(rows.length, 4);
    for (const r of rows) assert.deepEqual(r, { title: "Hi Spring", body: "20% off", template_id: templateId, template_version: 1 });
    // Versions are PostgreSQL integers: past 2^31 - 1 is the caller's mistake, not a 500.
    const overflow = await app.request("POST", "/campaigns", { key: apiKey, body: { name: "v", template_id: templateId, template_version: 2_147_483_648 } });
    assert.equal(overflow.status, 422, JSON.stringify(overflow.body));
  });
});

describe("campaign content is checked at creation", () => {
  async function campaignRowsOf(appId: string): Promise<number> {
    const [n] = await app.deps.db("message_campaigns").where("application_id", appId).count<{ count: string }[]>({ count: "*" });
    return Number(n!.count);
  }

  test("content no provider would take is refused like POST /messages (400), and nothing is written", async () => {
    const { id: appId, apiKey } = await createApp();
    for (const [body, code] of [
      [{ title: "t".repeat(200) }, "message_too_large"],
      [{ body: "b".repeat(5_000) }, "message_too_large"],
      [{ data: { from: "shop" } }, "invalid_message_content"],
      [{ data: { aps: { alert: "x" } } }, "invalid_message_content"],
    ] as const) {
      const res = await createCampaign(apiKey, body);
      assert.equal(res.status, 400, `${JSON.stringify(body).slice(0, 60)}: ${JSON.stringify(res.body).slice(0, 300)}`);
      assert.equal(res.body.error.code, code);
    }
    assert.equal(await campaignRowsOf(appId), 0);
    // "from" is reserved by FCM only: a campaign restricted to iOS may carry it.
    const ios = await createCampaign(apiKey, { data: { from: "shop" }, targeting_criteria: { subscription_types: ["iOSPush"] }, scheduled_at: new Date(Date.now() + 3_600_000).toISOString() });
    assert.equal(ios.status, 201, JSON.stringify(ios.body));
    const android = await createCampaign(apiKey, { data: { from: "shop" }, targeting_criteria: { subscription_types: ["AndroidPush"] } });
    assert.equal(android.status, 400);
    assert.equal(android.body.error.code, "invalid_message_content");
    assert.equal(await campaignRowsOf(appId), 1);
    await app.request("POST", `/campaigns/${ios.body.data.campaign_id}/cancel`, { key: apiKey });
  });

  test("templates: the rendered text is checked, and a personalized one with placeholders for recipient fields", async () => {
    const { id: appId, apiKey } = await createApp();
    const templateOf = async (body: Record<string, unknown>) => {
      const res = await app.request("POST", "/templates", { key: apiKey, body: { name: `t-${newId()}`, ...body } });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return (res.body.data.template_id ?? res.body.data.id) as string;
    };
    const plain = await templateOf({ title_template: "{{promo}}", body_template: "Sale" });
    const long = await app.request("POST", "/campaigns", { key: apiKey, body: { name: "t", template_id: plain, variables: { promo: "p".repeat(151) } } });
    assert.equal(long.status, 400, JSON.stringify(long.body));
    assert.equal(long.body.error.code, "message_too_large");
    // Already too long before any recipient's name is added.
    const personalized = await templateOf({ title_template: `Hi {{tags.first_name}} ${"x".repeat(150)}`, body_template: "Sale" });
    const tooLong = await app.request("POST", "/campaigns", { key: apiKey, body: { name: "t", template_id: personalized } });
    assert.equal(tooLong.status, 400, JSON.stringify(tooLong.body));
    assert.equal(tooLong.body.error.code, "message_too_large");
    const reserved = await templateOf({ title_template: "Hi {{tags.first_name}}", body_template: "Sale", data_template: { from: "{{tags.first_name}}" } });
    const bad = await app.request("POST", "/campaigns", { key: apiKey, body: { name: "t", template_id: reserved } });
    assert.equal(bad.status, 400, JSON.stringify(bad.body));
    assert.equal(bad.body.error.code, "invalid_message_content");
    assert.equal(await campaignRowsOf(appId), 0);
  });
});

describe("ttl_seconds counts from when each batch creates its messages", () => {
  test("a scheduled campaign, its test sends, and a campaign created before the rule", async () => {
    const { id: appId, apiKey } = await createApp();
    const [first] = await seed(appId, 3);
    const created = await createCampaign(apiKey, { ttl_seconds: 3_600, scheduled_at: new Date(Date.now() + 3_600_000).toISOString() });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.data.campaign_id;
    assert.deepEqual((await campaignOf(apiKey, id)).options, { ttl_seconds: 3_600 }, "kept relative");
    // Seconds pass between the create and the sends (hours for a real schedule).
    await new Promise((r) => setTimeout(r, 2_500));

    const testAt = Math.floor(Date.now() / 1000);
    const test = await app.request("POST", `/campaigns/${id}/test-send`, { key: apiKey, body: { subscription_ids: [first] } });
    assert.equal(test.status, 201, JSON.stringify(test.body));
    const testMessage = (await app.deps.db("messages").where("id", test.body.data.messages[0].message_id).first("options")) as { options: { expiration: number } };
    assert.ok(testMessage.options.expiration >= testAt + 3_600, `test send expires ${testMessage.options.expiration - testAt} s after it was sent`);

    const executeAt = Math.floor(Date.now() / 1000);
    assert.equal((await app.request("POST", `/campaigns/${id}/execute`, { key: apiKey })).status, 200);
    await waitForCampaign(apiKey, id, "completed");
    const options = (await app.deps.db("messages").where("campaign_id", id).pluck("options")) as Array<{ expiration: number; ttl_seconds?: number }>;
    assert.equal(options.length, 3);
    for (const o of options) {
      assert.ok(o.expiration >= executeAt + 3_600 && o.expiration <= executeAt + 3_600 + 60, `expires ${o.expiration - executeAt} s after execute`);
      assert.equal(o.ttl_seconds, 3_600, "messages keep their ttl beside the absolute expiration (the expiry rule tells now-or-never by it)");
    }

    // A campaign created before ttl_seconds was kept relative: its absolute expiration is kept.
    const legacyId = newId();
    const legacyExpiration = Math.floor(Date.now() / 1000) + 7_200;
    const [legacy] = (await app.deps.db("message_campaigns")
      .insert({
        id: legacyId,
        application_id: appId,
        name: "legacy",
        content: JSON.stringify({ title: "t", body: "b", data: {}, options: { expiration: legacyExpiration, badge: 1 }, variables: {} }),
        targeting_criteria: JSON.stringify({}),
        status: "running",
        started_at: new Date(),
      })
      .returning("*")) as CampaignRow[];
    await startCampaignWorkflow(app.deps, legacy!);
    await waitForCampaign(apiKey, legacyId, "completed");
    const legacyOptions = (await app.deps.db("messages").where("campaign_id", legacyId).pluck("options")) as unknown[];
    assert.equal(legacyOptions.length, 3);
    for (const o of legacyOptions) assert.deepEqual(o, { expiration: legacyExpiration, badge: 1 });
  });
});

describe("stats while a campaign is sending", () => {
  test("remaining counts the recipients whose messages are not created yet; audience_size; in_progress in every answer and filter", async () => {
    const { id: appId, apiKey } = await createApp();
    await seed(appId, 60);
    // 60/min: pages of 10, ten seconds apart, so 50 recipients wait for their batch for a while.
    const created = await createCampaign(apiKey, { throttle_per_minute: 60 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.data.status, "in_progress");
    const id = created.body.data.campaign_id;
    // The first batch has sent (its messages may already have turned receipt_timeout: 3 s here).
    await eventually(async () => {
      const s = await messageStatuses(id);
      return Object.values(s).reduce((a, b) => a + b, 0) === 10 && !s.pending && !s.errored;
    }, 30_000, 100);
    const stats = await statsOf(apiKey, id);
    assert.equal(stats.status, "in_progress");
    assert.equal(stats.total_recipients, 10);
    assert.equal(stats.audience_size, 60);
    assert.equal(stats.remaining, 50, JSON.stringify(stats));
    const view = await campaignOf(apiKey, id);
    assert.equal(view.status, "in_progress");
    assert.equal(view.audience_size, 60);

    // REF-001's name filters, and the stored name stays an alias.
    for (const status of ["in_progress", "running"]) {
      const list = await app.request("GET", `/campaigns?status=${status}`, { key: apiKey });
      assert.equal(list.status, 200, JSON.stringify(list.body));
      assert.deepEqual(
        list.body.data.campaigns.map((c: { id: string; status: string }) => [c.id, c.status]),
        [[id, "in_progress"]],
      );
    }
    assert.equal((await app.request("GET", "/campaigns?status=sending", { key: apiKey })).status, 422);
    const swapped = await app.request("GET", "/campaigns?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", { key: apiKey });
    assert.equal(swapped.status, 422, "swapped from/to is an error, not an empty list");
    assert.equal(swapped.body.error.code, "validation_error");

    const cancelled = await app.request("POST", `/campaigns/${id}/cancel`, { key: apiKey });
    assert.equal(cancelled.status, 200);
    const after = await eventually(async () => {
      const s = await statsOf(apiKey, id);
      return s.pending_count === 0 ? s : undefined;
    }, 30_000, 200);
    assert.equal(after.status, "cancelled");
    assert.equal(after.remaining, 0, "a cancelled campaign sends nothing more");
    assert.equal(after.audience_size, 60);
  });
});

test("an audience page is read along an index in id order: no sort of the rest of the audience, whatever the statistics say", async () => {
  const { id: appId } = await createApp();
  const ids = await seed(appId, 3_000, { tags: () => ({ plan: "pro" }) });
  const pageQuery = (criteria: Record<string, unknown>) =>
    audienceQuery(app.deps.db, appId, parseTargetingCriteria(criteria)).select("s.id").orderBy("s.id").limit(500).where("s.id", ">", ids[100]!);
  const sortedRows = async (criteria: Record<string, unknown>): Promise<number[]> => {
    const { sql, bindings } = pageQuery(criteria).toSQL();
    const [{ "QUERY PLAN": plan }] = (await app.deps.db.raw(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, bindings)).rows;
    const sorts: number[] = [];
    const walk = (node: { "Node Type": string; "Actual Rows": number; Plans?: unknown[] }): void => {
      if (node["Node Type"] === "Sort") sorts.push((node.Plans![0] as { "Actual Rows": number })["Actual Rows"]);
      for (const child of node.Plans ?? []) walk(child as typeof node);
    };
    walk(plan[0].Plan);
    return sorts;
  };
  for (const criteria of [{ tags: { plan: "pro" } }, {}, { subscription_types: ["iOSPush"] }]) {
    // Fresh rows (no statistics yet), then analysed: the two cases where plans used to differ.
    assert.deepEqual(await sortedRows(criteria), [], `no sort before ANALYZE for ${JSON.stringify(criteria)}`);
  }
  await app.deps.db.raw("ANALYZE subscriptions");
  for (const criteria of [{ tags: { plan: "pro" } }, {}, { subscription_types: ["iOSPush"] }]) {
    assert.deepEqual(await sortedRows(criteria), [], `no sort after ANALYZE for ${JSON.stringify(criteria)}`);
  }
  const page = (await pageQuery({ tags: { plan: "pro" } })) as Array<{ id: string }>;
  assert.deepEqual(page.map((r) => r.id), ids.slice(101, 601));
});

test("estimate and audience on the database: devices and distinct users, external_ids, last activity; unsubscribed devices never count", async () => {
  const { id: appId, apiKey } = await createApp();
  const aliceIos = await createPushSubscription(app, apiKey, { externalId: "alice", type: "iOSPush" });
  await createPushSubscription(app, apiKey, { externalId: "alice", type: "AndroidPush" });
  const aliceOld = await createPushSubscription(app, apiKey, { externalId: "alice", type: "iOSPush" });
  const bob = await createPushSubscription(app, apiKey, { externalId: "bob", type: "iOSPush" });
  await createPushSubscription(app, apiKey, { type: "AndroidPush" });
  // Alice's old phone unsubscribed: never part of an audience.
  await app.deps.db("subscriptions").where("id", aliceOld.id).update({ subscription_status: -2 });
  await app.deps.db("subscriptions").where("application_id", appId).update({ last_active_at: new Date("2026-01-01T00:00:00Z") });
  await app.deps.db("subscriptions").whereIn("id", [aliceIos.id, bob.id]).update({ last_active_at: new Date("2026-03-01T00:00:00Z") });
  const estimate = async (criteria: Record<string, unknown>) => {
    const res = await app.request("POST", "/campaigns/estimate", { key: apiKey, body: { targeting_criteria: criteria } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.data;
  };
  assert.deepEqual(await estimate({}), { total: 4, by_subscription_type: { iOSPush: 2, AndroidPush: 2 }, users: 2, devices_without_user: 1 });
  assert.deepEqual(await estimate({ external_ids: ["alice", "carol"] }), { total: 2, by_subscription_type: { iOSPush: 1, AndroidPush: 1 }, users: 1, devices_without_user: 0 });
  assert.deepEqual(await estimate({ last_active_after: "2026-02-01T00:00:00Z" }), { total: 2, by_subscription_type: { iOSPush: 2 }, users: 2, devices_without_user: 0 });
  assert.equal((await estimate({ last_active_before: "2026-02-01T00:00:00Z" })).total, 2);
  assert.deepEqual(await estimate({ tags: { nobody: "x" } }), { total: 0, by_subscription_type: {}, users: 0, devices_without_user: 0 });
  // The campaign sends to exactly what the estimate counted.
  const id = (await createCampaign(apiKey, { targeting_criteria: { external_ids: ["alice"] } })).body.data.campaign_id;
  await waitForCampaign(apiKey, id, "completed");
  const targeted = (await app.deps.db("messages").where("campaign_id", id).pluck("subscription_id")) as string[];
  assert.equal(targeted.length, 2);
  assert.ok(!targeted.includes(aliceOld.id), "the unsubscribed device got nothing");
});

test("estimate: production = test_type 0 or none; languages match case-insensitively, a bare language any region; countries in any case", async () => {
  const { id: appId, apiKey } = await createApp();
  const ids = await seed(appId, 6, { language: (i) => ["ko-KR", "ko", "en_US", "EN", "pt-BR", null][i]! });
  // As SDKs register them: 0 = production (REF-001 §2.1), none (older SDKs), 1/2 = development/ad-hoc.
  const testTypes = [0, null, 0, 1, 2, 0];
  for (const [i, id] of ids.entries()) await app.deps.db("subscriptions").where("id", id).update({ test_type: testTypes[i], country: i < 3 ? "KR" : "US" });
  const total = async (criteria: Record<string, unknown>): Promise<number> => {
    const res = await app.request("POST", "/campaigns/estimate", { key: apiKey, body: { targeting_criteria: criteria } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.data.total as number;
  };
  assert.equal(await total({ test_type: null }), 4);
  assert.equal(await total({ test_type: 0 }), 4);
  assert.equal(await total({ test_type: 1 }), 1);
  assert.equal(await total({ languages: ["ko"] }), 2);
  assert.equal(await total({ languages: ["KO-kr"] }), 1);
  assert.equal(await total({ languages: ["en"] }), 2);
  assert.equal(await total({ languages: ["en-US"] }), 1);
  assert.equal(await total({ countries: ["kr"] }), 3);
  // SEQ-002 §2.3's list of tag keys: every key present, whatever its value.
  await app.deps.db("subscriptions").where("id", ids[0]).update({ tags: JSON.stringify({ active_user: "1", has_purchased: "yes" }) });
  await app.deps.db("subscriptions").where("id", ids[1]).update({ tags: JSON.stringify({ active_user: "0" }) });
  assert.equal(await total({ tags: ["active_user", "has_purchased"] }), 1);
  assert.equal(await total({ tags: ["active_user"] }), 2);
  const refused = await app.request("POST", "/campaigns/estimate", { key: apiKey, body: { targeting_criteria: { last_active_after: "2026-02-01T00:00:00Z", last_active_before: "2026-01-01T00:00:00Z" } } });
  assert.equal(refused.status, 400);
  assert.equal(refused.body.error.code, "invalid_targeting_criteria");
  assert.equal(refused.body.error.details.field, "targeting_criteria.last_active_before");
});
