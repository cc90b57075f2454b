import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { seedPushSubscriptions, type SeedOptions } from "../../test/support/fixtures";
import { newId } from "../db/ids";
import { quotaStatus } from "../quota/quota";
import { campaignWorkflowId, progressQuery } from "../../workflows/campaign";
import { campaignBatchWorkflowId } from "../../workflows/campaign-batch";
import { createReconcilerActivities } from "../../activities/reconciler";
import { insertRunningCampaign, startTestCampaignWorkflow } from "../../test/support/campaigns";

// Retry backoffs at 1/1000 (15 min outage retries → 0.9 s) and a 2 s pending timeout, so the
// pending-timeout rule shows within seconds; status re-reads every second (lost signals).
const ENV = { AUTOMATA_RECEIPT_TIMEOUT: "3s", AUTOMATA_RETRY_SCALE: "0.001", AUTOMATA_PENDING_TIMEOUT: "2s", AUTOMATA_CAMPAIGN_STATUS_POLL: "1s" };

let app: TestApp;

before(async () => {
  app = await startTestApp({ worker: true, env: ENV });
});
after(async () => {
  await app.close();
});

function createApp(body: Record<string, unknown> = {}) {
  return app.createApplication({ rate_limit_tier: "enterprise", ...body });
}

async function createCampaign(key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return app.request("POST", "/campaigns", { key, body: { name: `c-${newId()}`, title: "Hello", body: "Campaign", ...body }, headers });
}

async function createdCampaign(key: string, body: Record<string, unknown>): Promise<string> {
  const res = await createCampaign(key, body);
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.data.campaign_id;
}

async function statusOf(id: string): Promise<string> {
  return (await app.deps.db("message_campaigns").where("id", id).first()).status;
}

async function messagesOf(id: string) {
  return (await app.deps.db("messages").where("campaign_id", id).orderBy("subscription_id")) as Array<{
    id: string;
    subscription_id: string;
    status: string;
    title: string | null;
    body: string | null;
    error_code: string | null;
    attempts: number;
    sent_at: Date | null;
  }>;
}

/** The campaign workflow's progress once it has planned its timezone delivery groups. */
async function plannedProgress(id: string) {
  const handle = app.deps.temporal.workflow.getHandle(campaignWorkflowId(id));
  return eventually(async () => {
    const p = await handle.query(progressQuery);
    return p.groups ? p : undefined;
  }, 15_000, 100);
}

async function seed(applicationId: string, count: number, options: SeedOptions = {}): Promise<string[]> {
  return seedPushSubscriptions(app, applicationId, count, options);
}

test("timezone delivery: each timezone group at its local time; unset and invalid zones use the fallback; later groups wait", async () => {
  const { id: appId, apiKey } = await createApp();
  // Abidjan is UTC+0 all year (London is only in winter: in summer this test would plan a third group).
  const zones = ["UTC", "Africa/Abidjan", null, "Mars/Base", "Asia/Seoul"];
  const tag = newId();
  const ids = await seed(appId, 20, { timezone: (i) => zones[i % 5]!, tags: () => ({ wave: tag }) });
  const seoul = new Set(ids.filter((_, i) => i % 5 === 4));
  // A local time ~8 s from now in UTC: UTC, Abidjan, unset and invalid zones (fallback UTC) go
  // then; Seoul (UTC+9) reaches that wall-clock time 15 h later.
  const target = new Date(Math.ceil((Date.now() + 8_000) / 1_000) * 1_000);
  const localTime = target.toISOString().slice(11, 19);
  const id = await createdCampaign(apiKey, { targeting_criteria: { tags: { wave: tag } }, delivery: { mode: "timezone", local_time: localTime, fallback_timezone: "UTC" } });
  const view = (await app.request("GET", `/campaigns/${id}`, { key: apiKey })).body.data;
  assert.deepEqual(view.delivery, { mode: "timezone", local_time: localTime, fallback_timezone: "UTC" });

  const handle = app.deps.temporal.workflow.getHandle(campaignWorkflowId(id));
  const progress = await plannedProgress(id);
  assert.equal(progress.groups!.length, 2);
  assert.equal(progress.groups![0]!.sendAt, target.getTime());
  assert.equal(progress.groups![0]!.includesUnset, true);
  assert.deepEqual(new Set(progress.groups![0]!.timezones), new Set(["UTC", "Africa/Abidjan", "Mars/Base"]));
  assert.equal(progress.groups![1]!.sendAt, target.getTime() + 15 * 3_600_000);
  assert.deepEqual(progress.groups![1]!.timezones, ["Asia/Seoul"]);

  const firstWave = await eventually(async () => {
    const rows = await messagesOf(id);
    return rows.length === 16 && rows.every((m) => m.status === "successful" || m.status === "failed") ? rows : undefined;
  }, 40_000, 250);
  for (const m of firstWave) {
    assert.equal(seoul.has(m.subscription_id), false, "no Seoul recipient before their local time");
    assert.equal(m.status, "successful");
    assert.ok(m.sent_at!.getTime() >= target.getTime() - 5, `sent at ${m.sent_at!.toISOString()}, not before ${target.toISOString()}`);
  }
  assert.equal(await statusOf(id), "running", "the Seoul group is still ahead");
  const cancelled = await app.request("POST", `/campaigns/${id}/cancel`, { key: apiKey });
  assert.equal(cancelled.status, 200);
  await eventually(async () => (await handle.describe()).status.name === "COMPLETED", 30_000, 200);
  assert.equal((await messagesOf(id)).length, 16, "the cancelled group never got messages");
});

test("timezone delivery without fallback_timezone uses the application's timezone for subscriptions without one", async () => {
  const { id: appId, apiKey } = await createApp({ timezone: "Asia/Seoul" });
  const tag = newId();
  const zones = [null, "Asia/Seoul", "UTC"];
  await seed(appId, 6, { timezone: (i) => zones[i % 3]!, tags: () => ({ wave: tag }) });
  // Hours away in every zone: this test reads the plan, it sends nothing.
  const localTime = new Date(Date.now() + 6 * 3_600_000).toISOString().slice(11, 16);
  const id = await createdCampaign(apiKey, { targeting_criteria: { tags: { wave: tag } }, delivery: { mode: "timezone", local_time: localTime } });
  const view = (await app.request("GET", `/campaigns/${id}`, { key: apiKey })).body.data;
  assert.deepEqual(view.delivery, { mode: "timezone", local_time: localTime, fallback_timezone: "Asia/Seoul" });
  const progress = await plannedProgress(id);
  const unset = progress.groups!.find((g) => g.includesUnset);
  assert.deepEqual(unset?.timezones, ["Asia/Seoul"], "the devices without a timezone go with Seoul's, at Seoul's local time");
  assert.deepEqual(progress.groups!.find((g) => !g.includesUnset)?.timezones, ["UTC"]);
  assert.equal((await app.request("POST", `/campaigns/${id}/cancel`, { key: apiKey })).status, 200);
});

test("a cancel written to PostgreSQL without a signal (Temporal unreachable) ends a campaign waiting for a later timezone group", async () => {
  const { id: appId, apiKey } = await createApp();
  const tag = newId();
  await seed(appId, 4, { timezone: () => "UTC", tags: () => ({ wave: tag }) });
  // Two hours ahead in UTC: the only group waits that long.
  const localTime = new Date(Date.now() + 2 * 3_600_000).toISOString().slice(11, 19);
  const id = await createdCampaign(apiKey, { targeting_criteria: { tags: { wave: tag } }, delivery: { mode: "timezone", local_time: localTime, fallback_timezone: "UTC" } });
  const handle = app.deps.temporal.workflow.getHandle(campaignWorkflowId(id));
  await eventually(async () => ((await handle.query(progressQuery)).groups ? true : undefined), 15_000, 100);
  await app.deps.db("message_campaigns").where("id", id).update({ status: "cancelled", cancelled_at: new Date() });
  await eventually(async () => (await handle.describe()).status.name === "COMPLETED", 20_000, 200);
  assert.equal(await statusOf(id), "cancelled");
  assert.equal((await messagesOf(id)).length, 0, "nothing was sent");
});

test("a chunk's APNs and FCM groups go out together: a slow iOS and a slow Android recipient are both asked before either answers", async () => {
  const { id: applicationId, apiKey } = await createApp();
  const tokens = [`slow-${newId()}`, `slow-${newId()}`];
  await seed(applicationId, 2, { token: (i) => tokens[i]!, tags: () => ({ cohort: "both-platforms" }) });
  const campaignId = await createdCampaign(apiKey, { targeting_criteria: { tags: { cohort: "both-platforms" } } });
  await eventually(async () => (await messagesOf(campaignId)).filter((m) => m.status === "successful").length === 2, 30_000, 200);
  const asked = tokens.map((token) => app.simulator!.simulator.lastPayloadFor(token)!.receivedAt);
  // The simulator answers slow- tokens after 2 s; one platform after the other would ask the second ≥ 2 s later.
  assert.ok(Math.abs(asked[0]! - asked[1]!) < 1_000, `iOS asked at ${asked[0]}, Android at ${asked[1]}`);
});

test("delivery validation: local_time and timezones are checked", async () => {
  const { apiKey } = await createApp();
  for (const delivery of [{ mode: "timezone", local_time: "25:00" }, { mode: "timezone", local_time: "09:00", fallback_timezone: "Mars/Base" }, { mode: "sometime", local_time: "09:00" }]) {
    const res = await createCampaign(apiKey, { delivery });
    assert.equal(res.status, 422, JSON.stringify(delivery));
    assert.equal(res.body.error.code, "validation_error");
  }
});

test("per-recipient rendering: {{tags.x}} and subscription fields per message; a recipient without a required tag fails alone", async () => {
  const { id: appId, apiKey } = await createApp({ quota: { daily_quota: 100 } });
  const template = await app.request("POST", "/templates", {
    key: apiKey,
    body: {
      name: `t-${newId()}`,
      title_template: "Hi {{tags.first_name}}",
      body_template: "{{promo}} ({{subscription.language}})",
      variables: [
        { name: "tags.first_name", required: true },
        { name: "promo", required: true },
      ],
    },
  });
  assert.equal(template.status, 201, JSON.stringify(template.body));
  const templateId = template.body.data.template_id ?? template.body.data.id;
  const group = newId();
  const ids = await seed(appId, 6, { tags: (i): Record<string, string> => (i < 4 ? { group, first_name: `N${i}` } : { group }), language: () => "ko" });

  const reserved = await createCampaign(apiKey, { title: undefined, body: undefined, template_id: templateId, variables: { promo: "x", tags: { first_name: "forged" } } });
  assert.equal(reserved.status, 422, JSON.stringify(reserved.body));
  assert.equal(reserved.body.error.code, "validation_error");
  const missing = await createCampaign(apiKey, { title: undefined, body: undefined, template_id: templateId, variables: {} });
  assert.equal(missing.body.error.code, "missing_required_variable");

  const id = await createdCampaign(apiKey, { title: undefined, body: undefined, template_id: templateId, variables: { promo: "10% off" }, targeting_criteria: { tags: { group } } });
  await eventually(async () => (await statusOf(id)) === "completed", 60_000, 200);
  const rows = await messagesOf(id);
  assert.equal(rows.length, 6);
  const byId = new Map(rows.map((m) => [m.subscription_id, m]));
  ids.forEach((sid, i) => {
    const m = byId.get(sid)!;
    if (i < 4) assert.deepEqual([m.status, m.title, m.body], ["successful", `Hi N${i}`, "10% off (ko)"]);
    else assert.deepEqual([m.status, m.error_code, m.sent_at], ["failed", "missing_required_variable", null]);
  });
  // Each timeline reads in order: created, then the one outcome (a render failure is written in the
  // same transaction, even the same millisecond, as the creation).
  for (const [i, sid] of ids.entries()) {
    const view = await app.request("GET", `/messages/${byId.get(sid)!.id}`, { key: apiKey });
    assert.equal(view.status, 200, JSON.stringify(view.body));
    const timeline = (view.body.data.events as Array<{ event_type: string; from_status: string | null; to_status: string; data: Record<string, unknown> }>).map((e) => [e.event_type, e.from_status, e.to_status]);
    assert.deepEqual(timeline, i < 4 ? [["created", null, "pending"], ["sent", "pending", "successful"]] : [["created", null, "pending"], ["failed", "pending", "failed"]], `timeline of recipient ${i}`);
    assert.deepEqual(view.body.data.events[0].data, { source: "campaign", batch: 0 });
  }
  // The two that could not be rendered were never sent, so their units came back.
  await eventually(async () => (await quotaStatus(app.deps.db, appId)).daily!.used === 4, 15_000, 200);
});

test("the application's ceiling paces all of its campaigns together", async () => {
  const created = await app.request("POST", "/admin/applications", { admin: true, body: { name: "ceiling", rate_limit_tier: "enterprise", campaign_max_per_minute: 6_000 } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const appId = created.body.data.application_id;
  const apiKey = created.body.data.api_key;
  const view = await app.request("GET", `/admin/applications/${appId}`, { admin: true });
  assert.equal(view.body.data.campaign_max_per_minute, 6_000);
  await seed(appId, 500, { tags: () => ({ part: "a" }) });
  await seed(appId, 500, { tags: () => ({ part: "b" }) });
  // 6,000/min: 500 recipients take 5 s of the ceiling, so whichever campaign pages second waits.
  const [a, b] = await Promise.all([createdCampaign(apiKey, { targeting_criteria: { tags: { part: "a" } } }), createdCampaign(apiKey, { targeting_criteria: { tags: { part: "b" } } })]);
  await eventually(async () => (await statusOf(a)) === "completed" && (await statusOf(b)) === "completed", 90_000, 250);
  const startOf = async (id: string) => (await app.deps.temporal.workflow.getHandle(campaignBatchWorkflowId(id, 0)).describe()).startTime.getTime();
  const gap = Math.abs((await startOf(a)) - (await startOf(b)));
  assert.ok(gap >= 4_500, `second campaign's first batch started ${gap} ms after the first's`);
  assert.equal((await messagesOf(a)).length + (await messagesOf(b)).length, 1_000);
});

test("under an application ceiling a campaign larger than one page still reaches its whole audience, a page per 10 s of allowance", async () => {
  const created = await app.request("POST", "/admin/applications", { admin: true, body: { name: "ceiling pages", rate_limit_tier: "enterprise", campaign_max_per_minute: 600 } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const appId = created.body.data.application_id;
  await seed(appId, 150, {});
  // 600/min: pages of 100 (10 s of the ceiling), so the audience is two pages, the second ~10 s later.
  const id = await createdCampaign(created.body.data.api_key, {});
  await eventually(async () => (await statusOf(id)) === "completed", 60_000, 250);
  const messages = await messagesOf(id);
  assert.equal(messages.length, 150, "every recipient got a message, not only the first page");
  // Sent, each of them (the 3 s receipt window may have failed the first page's since).
  assert.equal(messages.filter((m) => m.sent_at !== null).length, 150);
  const startOf = async (batchNo: number) => (await app.deps.temporal.workflow.getHandle(campaignBatchWorkflowId(id, batchNo)).describe()).startTime.getTime();
  const gap = (await startOf(1)) - (await startOf(0));
  assert.ok(gap >= 9_000, `second page started ${gap} ms after the first`);
});

test("a pause while a page waits for its turn under the ceiling starts none of that page's batches; resume sends them", async () => {
  const created = await app.request("POST", "/admin/applications", { admin: true, body: { name: "ceiling pause", rate_limit_tier: "enterprise", campaign_max_per_minute: 600 } });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const { application_id: appId, api_key: apiKey } = created.body.data;
  await seed(appId, 150, {});
  // 600/min: pages of 100; the second page's turn comes ~10 s after the first's.
  const id = await createdCampaign(apiKey, {});
  const handle = app.deps.temporal.workflow.getHandle(campaignWorkflowId(id));
  await eventually(async () => (await handle.query(progressQuery)).batchesStarted === 1 && (await messagesOf(id)).length === 100, 15_000, 100);
  const paused = await app.request("POST", `/campaigns/${id}/pause`, { key: apiKey });
  assert.equal(paused.status, 200, JSON.stringify(paused.body));
  // Past the second page's turn: it was read before the pause, yet it must not start.
  await new Promise((r) => setTimeout(r, 11_000));
  assert.equal((await handle.query(progressQuery)).batchesStarted, 1, "no batch started after the pause");
  assert.equal((await messagesOf(id)).length, 100);
  assert.equal((await app.request("POST", `/campaigns/${id}/resume`, { key: apiKey })).status, 200);
  await eventually(async () => (await statusOf(id)) === "completed", 60_000, 250);
  assert.equal((await messagesOf(id)).length, 150);
});

test("pending timeout: messages whose next retry would pass it fail with pending_timeout and are refunded", async () => {
  const { id: appId, apiKey } = await createApp({ quota: { daily_quota: 100 } });
  const group = newId();
  await seed(appId, 4, { prefix: () => "down", tags: () => ({ group }) });
  const id = await createdCampaign(apiKey, { targeting_criteria: { tags: { group } } });
  await eventually(async () => (await statusOf(id)) === "completed", 60_000, 200);
  for (const m of await messagesOf(id)) {
    assert.equal(m.status, "failed");
    assert.equal(m.error_code, "pending_timeout");
    assert.ok(m.attempts < 24, `gave up after ${m.attempts} attempts, before the outage schedule ran out`);
  }
  await eventually(async () => (await quotaStatus(app.deps.db, appId)).daily!.used === 0, 15_000, 200);
});

test("a pause and resume written to PostgreSQL without a signal (Temporal unreachable) still reach the workflow", async () => {
  const { id: appId, apiKey } = await createApp();
  const group = newId();
  await seed(appId, 40, { tags: () => ({ group }) });
  // 120/min: pages of 20, the second ~10 s after the first.
  const id = await createdCampaign(apiKey, { targeting_criteria: { tags: { group } }, throttle_per_minute: 120 });
  await eventually(async () => (await messagesOf(id)).length === 20, 20_000, 100);
  await app.deps.db("message_campaigns").where("id", id).update({ status: "paused" });
  const handle = app.deps.temporal.workflow.getHandle(campaignWorkflowId(id));
  await eventually(async () => (await handle.query(progressQuery)).paused, 30_000, 200);
  assert.equal((await messagesOf(id)).length, 20, "no batch after the pause was read");
  await app.deps.db("message_campaigns").where("id", id).update({ status: "running" });
  await eventually(async () => (await statusOf(id)) === "completed", 30_000, 200);
  assert.equal((await messagesOf(id)).length, 40);

  // An execute whose signal never arrived: the waiting workflow reads `running` and starts.
  const later = await createdCampaign(apiKey, { targeting_criteria: { tags: { group } }, scheduled_at: new Date(Date.now() + 3_600_000).toISOString() });
  assert.equal(await statusOf(later), "scheduled");
  await app.deps.db("message_campaigns").where("id", later).update({ status: "running", started_at: new Date() });
  await eventually(async () => (await statusOf(later)) === "completed", 30_000, 200);
  assert.equal((await messagesOf(later)).length, 40);
});

test("the reconciler starts the workflow of a campaign whose start never reached Temporal", async () => {
  const { id: appId } = await createApp();
  const group = newId();
  await seed(appId, 5, { tags: () => ({ group }) });
  const id = await insertRunningCampaign(app, appId, "orphan", { tags: { group } }, { created_at: new Date(Date.now() - 10 * 60_000) });
  const { restartOrphanedCampaigns } = createReconcilerActivities(app.deps);
  const first = await restartOrphanedCampaigns({ olderThanMs: 60_000, limit: 100, applicationId: appId });
  assert.equal(first.started, 1);
  await eventually(async () => (await statusOf(id)) === "completed", 30_000, 200);
  assert.equal((await messagesOf(id)).length, 5);
  const second = await restartOrphanedCampaigns({ olderThanMs: 60_000, limit: 100, applicationId: appId });
  assert.equal(second.started, 0, "a campaign whose workflow exists is left alone");
});

test("executing a scheduled campaign whose workflow never started (Temporal was down at its create) sends it now", async () => {
  const { id: appId, apiKey } = await createApp();
  const group = newId();
  await seed(appId, 3, { tags: () => ({ group }) });
  const id = await insertRunningCampaign(app, appId, "scheduled orphan", { tags: { group } }, { status: "scheduled", scheduled_at: new Date(Date.now() + 3_600_000), started_at: null, campaign_type: "scheduled" });
  const executed = await app.request("POST", `/campaigns/${id}/execute`, { key: apiKey });
  assert.equal(executed.status, 200, JSON.stringify(executed.body));
  // Well before the hour is up, and without a reconciler pass.
  await eventually(async () => (await statusOf(id)) === "completed", 20_000, 200);
  assert.equal((await messagesOf(id)).filter((m) => m.sent_at !== null).length, 3);
});

test("a campaign whose workflow an operator terminated ends failed; its stopped batch's unsent messages fail and are refunded", async () => {
  // Batch 0 retries an outage (15 minutes apart); there is no second page (a retrying batch gives
  // up its window slot, so one would start). Created before the reconciler's grace period, like a
  // campaign that has been running a while.
  const idempotencyKey = `terminated-${newId()}`;
  const { id, appId, apiKey, handle } = await campaignWithFirstBatchRetrying("terminated campaign", { statusPollMs: 60_000 }, { created_at: new Date(Date.now() - 10 * 60_000), idempotency_key: idempotencyKey }, false);
  await handle.terminate("operator stopped the campaign");
  assert.equal(await statusOf(id), "running", "nothing but the reconciler notices");
  // A client retrying its create gets the campaign back, and the terminate stands.
  const replay = await app.request("POST", "/campaigns", { key: apiKey, headers: { "Idempotency-Key": idempotencyKey }, body: { name: "terminated campaign", title: "t", body: "b", targeting_criteria: { tags: { any: "one" } } } });
  assert.equal(replay.status, 201, JSON.stringify(replay.body));
  assert.equal(replay.body.data.campaign_id, id);
  assert.equal((await handle.describe()).status.name, "TERMINATED", "the replay did not start the campaign again");
  const { restartOrphanedCampaigns } = createReconcilerActivities(app.deps);
  // Batch 0 is still sending (its retry waits): it may yet end on its own or die, so the campaign waits.
  await restartOrphanedCampaigns({ olderThanMs: 60_000, limit: 100, applicationId: appId });
  assert.equal(await statusOf(id), "running", "not failed while a batch of it is still sending");
  assert.ok((await messagesOf(id)).every((m) => m.status === "errored"));

  await app.deps.temporal.workflow.getHandle(campaignBatchWorkflowId(id, 0)).terminate("operator stopped the campaign");
  const pass = await restartOrphanedCampaigns({ olderThanMs: 60_000, limit: 100, applicationId: appId });
  assert.ok(pass.abandoned >= 1, JSON.stringify(pass));
  const row = await app.deps.db("message_campaigns").where("id", id).first();
  assert.equal(row.status, "failed");
  assert.ok(row.completed_at, "completed_at is set");
  assert.match(row.error_message, /TERMINATED/);
  assert.deepEqual((await messagesOf(id)).map((m) => [m.status, m.error_code]), Array.from({ length: 5 }, () => ["failed", "batch_aborted"]));
  assert.equal((await quotaStatus(app.deps.db, appId)).daily!.used, 0, "the stopped batch's debit was refunded");
  const shown = await app.request("GET", `/campaigns/${id}`, { key: apiKey });
  assert.equal(shown.status, 200);
  assert.equal(shown.body.data.status, "failed");
  assert.match(shown.body.data.error_message, /TERMINATED/);
  // Not started again: a terminate is the operator's decision.
  assert.equal((await handle.describe()).status.name, "TERMINATED");
});

test("cancelling a campaign whose workflow an operator terminated still cancels and refunds its unsent messages", async () => {
  // Only the retrying page: nothing else could start before the terminate.
  const { id, appId, apiKey, handle } = await campaignWithFirstBatchRetrying("terminated, then cancelled", { statusPollMs: 60_000 }, {}, false);
  await handle.terminate("operator stopped the campaign");
  await app.deps.temporal.workflow.getHandle(campaignBatchWorkflowId(id, 0)).terminate("operator stopped the campaign");
  assert.equal((await quotaStatus(app.deps.db, appId)).daily!.used, 5);

  // The cancel signal finds no workflow: the API starts one that cleans up.
  const cancelled = await app.request("POST", `/campaigns/${id}/cancel`, { key: apiKey });
  assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
  await eventually(async () => (await messagesOf(id)).every((m) => m.status === "cancelled"), 30_000, 200);
  assert.equal((await messagesOf(id)).length, 5);
  await eventually(async () => (await quotaStatus(app.deps.db, appId)).daily!.used === 0, 15_000, 200);
  assert.equal(await statusOf(id), "cancelled");
  // Cancelling again is harmless: the clean-up run completed normally and is not run again.
  assert.equal((await app.request("POST", `/campaigns/${id}/cancel`, { key: apiKey })).status, 200);
});

test("Idempotency-Key: the same body (any key order) replays, a different body is idempotency_key_reused", async () => {
  const { apiKey } = await createApp();
  const key = newId();
  const body = { name: "idem", title: "A", body: "B", scheduled_at: new Date(Date.now() + 3_600_000).toISOString() };
  const first = await createCampaign(apiKey, body, { "Idempotency-Key": key });
  assert.equal(first.status, 201);
  const reordered = Object.fromEntries(Object.entries(body).reverse());
  const replay = await app.request("POST", "/campaigns", { key: apiKey, body: reordered, headers: { "Idempotency-Key": key } });
  assert.equal(replay.status, 201);
  assert.equal(replay.body.data.campaign_id, first.body.data.campaign_id);
  const different = await createCampaign(apiKey, { ...body, body: "changed" }, { "Idempotency-Key": key });
  assert.equal(different.status, 409);
  assert.equal(different.body.error.code, "idempotency_key_reused");
  const rows = await app.deps.db("message_campaigns").where("idempotency_key", key).select("id");
  assert.equal(rows.length, 1);
  await app.request("POST", `/campaigns/${first.body.data.campaign_id}/cancel`, { key: apiKey });
});

/**
 * Two batches of five (`down` tokens first, then `ok` ones), one at a time, on an application with
 * a daily quota of 100. Answers once batch 0's five messages are errored, waiting for their outage
 * retry (real timings: 15 minutes), with the campaign workflow's handle.
 */
async function campaignWithFirstBatchRetrying(name: string, run: { batchesPerRun?: number; statusPollMs: number }, columns: Record<string, unknown> = {}, secondPage = true) {
  const { id: appId, apiKey } = await createApp({ quota: { daily_quota: 100 } });
  const group = newId();
  // Ids grow with time: the first page (batch 0) is the `down` five, the second the `ok` five.
  await seed(appId, 5, { prefix: () => "down", tags: () => ({ group }) });
  if (secondPage) await seed(appId, 5, { tags: () => ({ group }) });
  const id = await insertRunningCampaign(app, appId, name, { tags: { group } }, columns);
  const handle = await startTestCampaignWorkflow(app, { campaignId: id, applicationId: appId }, { timing: { receiptTimeoutMs: 3_000, retryScale: 1, pendingTimeoutMs: 3_600_000 }, pageSize: 5, window: 1, ...run });
  // Batch 1 may already be under way: a retrying batch gives up its window slot.
  await eventually(async () => {
    const rows = await messagesOf(id);
    return rows.length >= 5 && rows.slice(0, 5).every((m) => m.status === "errored");
  }, 15_000, 50);
  return { id, appId, apiKey, handle };
}

/** {@link campaignWithFirstBatchRetrying}, then an operator terminates batch 0; answers with the campaign workflow's result. */
async function terminateFirstOfTwoBatches(name: string, run: { batchesPerRun?: number; statusPollMs: number }) {
  const { id, appId, handle } = await campaignWithFirstBatchRetrying(name, run);
  await app.deps.temporal.workflow.getHandle(campaignBatchWorkflowId(id, 0)).terminate("operator stopped it");
  return { id, appId, handle, result: await handle.result() };
}

test("a batch waiting to retry gives its window slot to the next page: one provider error does not hold the rest of the audience for the retry schedule", async () => {
  const { id: appId } = await createApp({ quota: { daily_quota: 100 } });
  const group = newId();
  // Pages of 5 with one batch sending at a time: batch 0 is five `flaky` devices (503 once, then
  // 200), batches 1 and 2 ten `ok` ones. Outage retries are 15 min at 1/100: 9 to 10.8 s.
  await seed(appId, 5, { prefix: () => "flaky", tags: () => ({ group }) });
  await seed(appId, 10, { tags: () => ({ group }) });
  const id = await insertRunningCampaign(app, appId, "retry frees slot", { tags: { group } });
  const handle = await startTestCampaignWorkflow(app, { campaignId: id, applicationId: appId }, { timing: { receiptTimeoutMs: 3_000, retryScale: 0.01, pendingTimeoutMs: 3_600_000 }, pageSize: 5, window: 1, statusPollMs: 1_000 });
  const result = await handle.result();
  const rows = await messagesOf(id);
  // Sent is what counts here (the earlier pages' receipt windows may have run out since).
  assert.deepEqual(rows.map((m) => [m.sent_at !== null, m.attempts]), [...Array.from({ length: 5 }, () => [true, 2]), ...Array.from({ length: 10 }, () => [true, 1])]);
  const retried = Math.min(...rows.slice(0, 5).map((m) => m.sent_at!.getTime()));
  const rest = Math.max(...rows.slice(5).map((m) => m.sent_at!.getTime()));
  assert.ok(rest < retried, `the other pages went out (${new Date(rest).toISOString()}) while batch 0 waited to retry (${new Date(retried).toISOString()})`);
  assert.deepEqual([result.batchesStarted, result.successful, result.failed, result.inFlight, result.retrying], [3, 15, 0, [], []]);
  assert.equal(await statusOf(id), "completed");
});

/** Batch 0's messages failed `batch_aborted` and were refunded; batch 1's were sent; the campaign completed. */
async function assertFirstBatchAbortedRestSent(id: string, appId: string): Promise<void> {
  assert.equal(await statusOf(id), "completed");
  const rows = await messagesOf(id);
  assert.deepEqual(
    rows.map((m) => [m.status, m.error_code]),
    [...Array.from({ length: 5 }, () => ["failed", "batch_aborted"]), ...Array.from({ length: 5 }, () => ["successful", null])],
  );
  // Batch 0's five units were debited, then refunded by the abort.
  await eventually(async () => (await quotaStatus(app.deps.db, appId)).daily!.used === 5, 15_000, 200);
}

test("a batch terminated after a continue-as-new frees its window slot; its unsent messages fail and are refunded", async () => {
  // A new run after every batch: batch 0 belongs to the first run.
  const { id, appId, handle, result } = await terminateFirstOfTwoBatches("terminated batch", { batchesPerRun: 1, statusPollMs: 1_000 });
  assert.notEqual((await handle.describe()).runId, handle.firstExecutionRunId, "batch 0 was started by an earlier run");
  assert.equal(result.batchesStarted, 2);
  assert.deepEqual(result.inFlight, []);
  await assertFirstBatchAbortedRestSent(id, appId);
});

test("a batch terminated while its campaign run is still going: its unsent messages fail and are refunded, the rest are sent", async () => {
  // No batchesPerRun: one run starts both batches, so the run itself sees batch 0 end without reporting.
  const { id, appId, handle, result } = await terminateFirstOfTwoBatches("terminated batch, same run", { statusPollMs: 60_000 });
  assert.equal((await handle.describe()).runId, handle.firstExecutionRunId, "one run did it all");
  assert.equal(result.batchesStarted, 2);
  await assertFirstBatchAbortedRestSent(id, appId);
});

test("a device token the worker cannot decrypt fails only its own message (token_unreadable); the rest of the batch is sent", async () => {
  const { id: appId, apiKey } = await createApp();
  const tag = newId();
  const ids = await seed(appId, 6, { tags: () => ({ wave: tag }) });
  const broken = ids[2]!;
  await app.deps.db("subscriptions").where("id", broken).update({ token_ciphertext: "v1:not-a-sealed-token" });
  const id = await createdCampaign(apiKey, { targeting_criteria: { tags: { wave: tag } } });
  await eventually(async () => (await statusOf(id)) === "completed", 20_000);
  const messages = await messagesOf(id);
  assert.equal(messages.length, 6);
  for (const m of messages) {
    if (m.subscription_id === broken) {
      assert.equal(m.status, "failed");
      assert.equal(m.error_code, "token_unreadable");
      assert.equal(m.sent_at, null);
    } else {
      assert.ok(m.sent_at, `${m.subscription_id} was sent`);
    }
  }
});

test("a provider refusing the application's credentials pauses the campaign, saying why, instead of failing the rest of its audience; resume sends the rest", async () => {
  const { id: appId, apiKey } = await createApp({ quota: { daily_quota: 100 } });
  const group = newId();
  // Pages of 5, one batch at a time: batch 0 meets the refusal (the simulator's `denied-`: APNs
  // 403 InvalidProviderToken, FCM 403 PERMISSION_DENIED), batches 1 and 2 would have too.
  await seed(appId, 5, { prefix: () => "denied", tags: () => ({ group }) });
  await seed(appId, 10, { tags: () => ({ group }) });
  const id = await insertRunningCampaign(app, appId, "credentials refused", { tags: { group } });
  const handle = await startTestCampaignWorkflow(app, { campaignId: id, applicationId: appId }, { timing: { receiptTimeoutMs: 3_000, retryScale: 1, pendingTimeoutMs: 3_600_000 }, pageSize: 5, window: 1, statusPollMs: 1_000 });
  const paused = await eventually(async () => {
    const view = (await app.request("GET", `/campaigns/${id}`, { key: apiKey })).body.data;
    return view.status === "paused" ? view : undefined;
  }, 20_000, 100);
  assert.match(paused.error_message, /refused the application's credentials \((InvalidProviderToken|messaging\/mismatched-credential)\).*resume/);
  await new Promise((resolve) => setTimeout(resolve, 1_500));
  const whilePaused = await messagesOf(id);
  assert.deepEqual(whilePaused.map((m) => [m.status, m.error_code]), Array.from({ length: 5 }, () => ["failed", "provider_auth_failed"]), "no later page was created");
  assert.equal((await handle.query(progressQuery)).paused, true);

  // The credentials are fixed (here: the other devices are fine); resume sends the rest.
  const resumed = await app.request("POST", `/campaigns/${id}/resume`, { key: apiKey });
  assert.deepEqual([resumed.status, resumed.body.data?.status], [200, "in_progress"]);
  const result = await handle.result();
  assert.equal(result.batchesStarted, 3);
  const rows = await messagesOf(id);
  assert.deepEqual(rows.map((m) => m.sent_at !== null), [...Array(5).fill(false), ...Array(10).fill(true)]);
  const done = (await app.request("GET", `/campaigns/${id}`, { key: apiKey })).body.data;
  assert.deepEqual([done.status, done.error_message], ["completed", null]);
  // The refused pushes were never accepted: their units came back.
  await eventually(async () => (await quotaStatus(app.deps.db, appId)).daily!.used === 10, 15_000, 200);
});

test("a credential refusal about some devices only (FCM THIRD_PARTY_AUTH_ERROR, APNs BadEnvironmentKeyInToken) fails those messages without pausing a campaign the same provider delivers", async () => {
  const { id: appId } = await createApp();
  const group = newId();
  // iOS and Android alternate: one of each is refused (the simulator's `foreign-`), two of each go through, all in one page.
  const ids = await seed(appId, 6, { prefix: (i) => (i < 2 ? "foreign" : "ok"), tags: () => ({ group }) });
  const refused = new Set(ids.slice(0, 2));
  const id = await insertRunningCampaign(app, appId, "some devices refused", { tags: { group } });
  const handle = await startTestCampaignWorkflow(app, { campaignId: id, applicationId: appId }, { timing: { receiptTimeoutMs: 3_000, retryScale: 1, pendingTimeoutMs: 3_600_000 }, pageSize: 10, window: 1, statusPollMs: 1_000 });
  await handle.result();
  assert.equal(await statusOf(id), "completed");
  const rows = await messagesOf(id);
  assert.equal(rows.length, 6);
  for (const m of rows) {
    if (refused.has(m.subscription_id)) assert.deepEqual([m.status, m.error_code, m.sent_at], ["failed", "provider_auth_failed", null], m.subscription_id);
    else assert.deepEqual([m.status, m.error_code, m.sent_at !== null], ["successful", null, true], m.subscription_id);
  }
  const campaign = await app.deps.db("message_campaigns").where("id", id).first();
  assert.equal(campaign.error_message, null);
});

test("provider credentials that will not load end a campaign's messages at the pending timeout, not in retries for ever", async () => {
  const { id: appId, apiKey } = await createApp();
  const tag = newId();
  await seed(appId, 3, { tags: () => ({ wave: tag }) });
  // A row sealed with another key (or damaged): every provider lookup for this application throws.
  await app.deps.db("applications").where("id", appId).update({ provider_credentials_ciphertext: "v1:not-sealed-credentials" });
  const id = await createdCampaign(apiKey, { targeting_criteria: { tags: { wave: tag } } });
  await eventually(async () => (await statusOf(id)) === "completed", 30_000);
  const messages = await messagesOf(id);
  assert.equal(messages.length, 3);
  for (const m of messages) {
    assert.equal(m.status, "failed");
    assert.equal(m.error_code, "pending_timeout");
    assert.equal(m.sent_at, null);
  }
  // Never accepted by a provider: the units come back.
  const stats = (await app.request("GET", `/campaigns/${id}/stats`, { key: apiKey })).body.data;
  assert.equal(stats.failed_count, 3);
});
