import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { createPushSubscription, simulatorToken } from "../../test/support/fixtures";
import { quotaStatus } from "../quota/quota";
import { ensureReconcilerSchedule, keepReconcilerSchedule } from "../worker/reconciler-schedule";
import { newId } from "../db/ids";
import { messageWorkflowId } from "../../workflows/message";
import { createReconcilerActivities } from "../../activities/reconciler";
import { createMessageActivities } from "../../activities/messages";
import { startMessageWorkflows } from "./workflow-client";

let app: TestApp;

before(async () => {
  app = await startTestApp({ worker: true, env: { AUTOMATA_RECEIPT_TIMEOUT: "1h" } });
});
after(async () => {
  await app.close();
});

/** What the API leaves behind if it dies between its insert and the workflow start: a pending row, `ageMs` old, with no workflow. */
async function insertOrphanMessage(applicationId: string, subscriptionId: string, body: string, ageMs: number): Promise<string> {
  const id = newId();
  await app.deps.db("messages").insert({ id, application_id: applicationId, subscription_id: subscriptionId, subscription_type: "iOSPush", status: "pending", body, created_at: new Date(Date.now() - ageMs) });
  return id;
}

test("a message accepted without a workflow (API died before starting it) is started by the reconciler schedule", { timeout: 90_000 }, async () => {
  const { id: applicationId, apiKey } = await app.createApplication();
  const sub = await createPushSubscription(app, apiKey);
  const orphanId = await insertOrphanMessage(applicationId, sub.id, "orphaned", 10 * 60_000);
  // One accepted two days ago is past the 24 h pending timeout: it must fail, not go out late.
  const staleId = await insertOrphanMessage(applicationId, sub.id, "too old", 48 * 3_600_000);
  const scheduleId = await ensureReconcilerSchedule(app.deps, { intervalMs: 1_000, olderThanMs: 60_000, applicationId });
  try {
    const description = await app.deps.temporal.schedule.getHandle(scheduleId).describe();
    assert.equal(description.action.type, "startWorkflow");
    await eventually(async () => (await app.deps.db("messages").where("id", orphanId).first()).status === "successful", 60_000, 250);
    const stale = await eventually(async () => {
      const row = await app.deps.db("messages").where("id", staleId).first();
      return row.status === "failed" ? row : undefined;
    }, 60_000, 250);
    assert.equal(stale.error_code, "pending_timeout");
    assert.equal(app.simulator!.simulator.requestsFor(sub.token), 1, "only the fresh orphan was sent; the stale one never was");
    const workflow = await app.deps.temporal.workflow.getHandle(messageWorkflowId(orphanId)).describe();
    assert.equal(workflow.status.name, "RUNNING");
    // Creating the schedule again (every worker does at start) takes the worker's settings — a
    // changed AUTOMATA_RECONCILE_INTERVAL / _AFTER applies — and keeps an operator's pause.
    await app.deps.temporal.schedule.getHandle(scheduleId).pause("operator pause");
    assert.equal(await ensureReconcilerSchedule(app.deps, { intervalMs: 90_000, olderThanMs: 120_000, applicationId }), scheduleId);
    const updated = await app.deps.temporal.schedule.getHandle(scheduleId).describe();
    assert.deepEqual(updated.spec.intervals?.map((i) => Number(i.every)), [90_000]);
    assert.equal(updated.action.type === "startWorkflow" && (updated.action.args?.[0] as { olderThanMs: number }).olderThanMs, 120_000);
    assert.equal(updated.state.paused, true);
    // A worker whose settings match writes nothing: the SDK's update writes back the whole state it
    // read, so each worker of a deploy rewriting it could undo a pause or resume made in between.
    await ensureReconcilerSchedule(app.deps, { intervalMs: 90_000, olderThanMs: 120_000, applicationId });
    assert.deepEqual((await app.deps.temporal.schedule.getHandle(scheduleId).describe()).info.lastUpdatedAt, updated.info.lastUpdatedAt);
  } finally {
    await app.deps.temporal.schedule.getHandle(scheduleId).delete();
  }
});

test("a reconciler schedule an operator deleted is recreated by the workers' periodic check, with its settings", { timeout: 60_000 }, async () => {
  const { id: applicationId } = await app.createApplication();
  const options = { intervalMs: 60_000, olderThanMs: 120_000, applicationId };
  const scheduleId = await ensureReconcilerSchedule(app.deps, options);
  const stop = keepReconcilerSchedule(app.deps, options, 200);
  try {
    await app.deps.temporal.schedule.getHandle(scheduleId).delete();
    const recreated = await eventually(async () => app.deps.temporal.schedule.getHandle(scheduleId).describe().catch(() => undefined), 20_000, 200);
    assert.deepEqual(recreated.spec.intervals?.map((i) => Number(i.every)), [60_000]);
  } finally {
    stop();
    await app.deps.temporal.schedule.getHandle(scheduleId).delete().catch(() => undefined);
  }
});

test("messages that already have a workflow are left alone", async () => {
  const { id: applicationId, apiKey } = await app.createApplication();
  // `down-`: the provider keeps failing, so the message stays unsent (pending or errored), which is
  // what the reconciler looks at; an `ok-` one could be sent before the pass and not be checked.
  const sub = await createPushSubscription(app, apiKey, { token: simulatorToken("down") });
  const res = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: sub.id, body: "normal" } });
  const id = res.body.data.message_id;
  await app.deps.db("messages").where("id", id).update({ created_at: new Date(Date.now() - 10 * 60_000) });
  const { restartOrphanedMessages } = createReconcilerActivities(app.deps);
  const result = await restartOrphanedMessages({ olderThanMs: 60_000, limit: 500, applicationId });
  assert.deepEqual(result, { checked: 1, started: 0, failed: 0, errors: 0 });
});

test("a message whose workflow an operator terminated before it was sent fails (workflow_closed) and is refunded, instead of staying pending", async () => {
  const { id: applicationId, apiKey } = await app.createApplication({ quota: { daily_quota: 10 } });
  // `down-`: the provider is unavailable, so the message waits errored for its next attempt.
  const sub = await createPushSubscription(app, apiKey, { token: simulatorToken("down") });
  const send = () => app.request("POST", "/messages", { key: apiKey, headers: { "Idempotency-Key": "stopped-1" }, body: { subscription_id: sub.id, body: "stopped" } });
  const res = await send();
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const id: string = res.body.data.message_id;
  await eventually(async () => (await app.deps.db("messages").where("id", id).first()).status === "errored", 15_000, 100);
  assert.equal((await quotaStatus(app.deps.db, applicationId)).daily!.used, 1);
  await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).terminate("operator stopped it");
  // A client retrying its request gets the message back, and the terminate stands.
  const replay = await send();
  assert.equal(replay.status, 201, JSON.stringify(replay.body));
  assert.equal(replay.body.data.message_id, id);
  assert.equal((await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).describe()).status.name, "TERMINATED", "the replay did not start it again");
  await app.deps.db("messages").where("id", id).update({ created_at: new Date(Date.now() - 10 * 60_000) });

  const { restartOrphanedMessages } = createReconcilerActivities(app.deps);
  const result = await restartOrphanedMessages({ olderThanMs: 60_000, limit: 500, applicationId });
  assert.deepEqual(result, { checked: 1, started: 0, failed: 1, errors: 0 });
  const row = await app.deps.db("messages").where("id", id).first();
  assert.deepEqual([row.status, row.error_code], ["failed", "workflow_closed"]);
  assert.match(row.error_message, /TERMINATED/);
  assert.equal((await quotaStatus(app.deps.db, applicationId)).daily!.used, 0, "its quota came back");
  // Not restarted: the terminate stands.
  assert.equal((await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).describe()).status.name, "TERMINATED");
});

test("a message cancelled after an operator terminated its workflow gets its quota back from the cancel itself", async () => {
  const { id: applicationId, apiKey } = await app.createApplication({ quota: { daily_quota: 10 } });
  const sub = await createPushSubscription(app, apiKey, { token: simulatorToken("down") });
  const res = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: sub.id, body: "cancel me later" } });
  const id: string = res.body.data.message_id;
  await eventually(async () => (await app.deps.db("messages").where("id", id).first()).status === "errored", 15_000, 100);
  assert.equal((await quotaStatus(app.deps.db, applicationId)).daily!.used, 1);
  await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).terminate("operator stopped it");
  const cancelled = await app.request("POST", `/messages/${id}/cancel`, { key: apiKey });
  assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
  assert.equal(cancelled.body.data.status, "cancelled");
  assert.equal((await quotaStatus(app.deps.db, applicationId)).daily!.used, 0, "no workflow was left to refund it");
});

test("an unsent message whose workflow completed anyway (an earlier release's lost-task bug) fails and is refunded", async () => {
  const { id: applicationId, apiKey } = await app.createApplication({ quota: { daily_quota: 10 } });
  const sub = await createPushSubscription(app, apiKey);
  // A cancelled row (never debited) lets a real workflow run to COMPLETED without sending.
  const id = newId();
  await app.deps.db("messages").insert({ id, application_id: applicationId, subscription_id: sub.id, subscription_type: "iOSPush", status: "cancelled", body: "left errored", cancelled_at: new Date() });
  await startMessageWorkflows(app.deps, [{ id, application_id: applicationId, subscription_id: sub.id }]);
  assert.equal(await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).result(), "cancelled");
  // The state that bug left: the row errored and debited, the workflow COMPLETED.
  await app.deps.db("messages").where("id", id).update({ status: "errored", cancelled_at: null, created_at: new Date(Date.now() - 10 * 60_000) });
  assert.deepEqual(await createMessageActivities(app.deps).debitQuota(id), { proceed: true });
  assert.equal((await quotaStatus(app.deps.db, applicationId)).daily!.used, 1);

  const result = await createReconcilerActivities(app.deps).restartOrphanedMessages({ olderThanMs: 60_000, limit: 500, applicationId });
  assert.deepEqual(result, { checked: 1, started: 0, failed: 1, errors: 0 });
  const row = await app.deps.db("messages").where("id", id).first();
  assert.deepEqual([row.status, row.error_code], ["failed", "workflow_closed"]);
  assert.match(row.error_message, /COMPLETED/);
  assert.equal((await quotaStatus(app.deps.db, applicationId)).daily!.used, 0, "its quota came back");
});

test("an orphan is found behind a backlog of errored messages that are retrying (a provider outage)", async () => {
  const { id: applicationId, apiKey } = await app.createApplication();
  const down = await createPushSubscription(app, apiKey, { token: simulatorToken("down") });
  const backlog: string[] = [];
  for (let i = 0; i < 2; i++) {
    const res = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: down.id, body: `outage ${i}` } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    backlog.push(res.body.data.message_id);
  }
  await eventually(async () => (await app.deps.db("messages").whereIn("id", backlog).where("status", "errored")).length === 2, 15_000, 100);
  // Older than the orphan: a pass taking the oldest first would spend its whole limit on them.
  await app.deps.db("messages").whereIn("id", backlog).update({ created_at: new Date(Date.now() - 20 * 60_000) });
  const sub = await createPushSubscription(app, apiKey);
  const orphanId = await insertOrphanMessage(applicationId, sub.id, "orphaned", 10 * 60_000);

  const { restartOrphanedMessages } = createReconcilerActivities(app.deps);
  // A page of each status: the orphan (pending) and the oldest of the backlog (errored).
  // One page of each: the backlog's page found nothing to do, so the pass does not page on through it.
  const result = await restartOrphanedMessages({ olderThanMs: 60_000, limit: 1, applicationId });
  assert.deepEqual(result, { checked: 2, started: 1, failed: 0, errors: 0 });
  await eventually(async () => (await app.deps.db("messages").where("id", orphanId).first()).status === "successful", 30_000, 200);
  // The backlog still errored, its workflows still retrying: left alone.
  for (const id of backlog) assert.equal((await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).describe()).status.name, "RUNNING");
});

test("a terminated message behind more than `limit` retrying messages is found: each pass goes on where the last one stopped", async () => {
  const { id: applicationId, apiKey } = await app.createApplication();
  const down = await createPushSubscription(app, apiKey, { token: simulatorToken("down") });
  const send = async (body: string) => {
    const res = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: down.id, body } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return res.body.data.message_id as string;
  };
  const backlog = [await send("outage 0"), await send("outage 1")];
  const stopped = await send("stopped");
  const all = [...backlog, stopped];
  await eventually(async () => (await app.deps.db("messages").whereIn("id", all).where("status", "errored")).length === 3, 15_000, 100);
  await app.deps.temporal.workflow.getHandle(messageWorkflowId(stopped)).terminate("operator stopped it");
  // The retrying backlog is older: a pass always taking the oldest would look at it for ever. Set
  // in SQL, as the API's inserts are, so the times have microseconds a JavaScript Date would lose.
  await app.deps.db("messages").whereIn("id", backlog).update({ created_at: app.deps.db.raw("now() - interval '20 minutes 0.000123 seconds'") });
  await app.deps.db("messages").where("id", stopped).update({ created_at: app.deps.db.raw("now() - interval '10 minutes 0.000456 seconds'") });

  const { restartOrphanedMessages } = createReconcilerActivities(app.deps);
  // A page of live workflows finds nothing to do, so a pass does not page on through the backlog:
  // one page per pass, and the rotation across passes reaches the terminated one.
  const pass = () => restartOrphanedMessages({ olderThanMs: 60_000, limit: 1, applicationId });
  assert.deepEqual(await pass(), { checked: 1, started: 0, failed: 0, errors: 0 });
  assert.deepEqual(await pass(), { checked: 1, started: 0, failed: 0, errors: 0 });
  assert.equal((await app.deps.db("messages").where("id", stopped).first()).status, "errored", "not reached yet");
  assert.deepEqual(await pass(), { checked: 1, started: 0, failed: 1, errors: 0 });
  const row = await app.deps.db("messages").where("id", stopped).first();
  assert.deepEqual([row.status, row.error_code], ["failed", "workflow_closed"]);
  // That page reached the end: the next pass starts over at the oldest.
  assert.deepEqual(await pass(), { checked: 1, started: 0, failed: 0, errors: 0 });
  assert.equal((await app.deps.db("reconciler_cursors").where("name", `messages:errored:${applicationId}`).first("after_id"))?.after_id, backlog.sort()[0]);
  for (const id of backlog) assert.equal((await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).describe()).status.name, "RUNNING");
});

test("orphans beyond one page (accepted during a Temporal outage) are all started in one pass, page by page", async () => {
  const { id: applicationId, apiKey } = await app.createApplication();
  const sub = await createPushSubscription(app, apiKey);
  const orphans: string[] = [];
  for (let i = 0; i < 7; i++) orphans.push(await insertOrphanMessage(applicationId, sub.id, `outage ${i}`, 10 * 60_000 - i * 1000));
  const { restartOrphanedMessages } = createReconcilerActivities(app.deps);
  // A pass with no budget for a second page stops at the first.
  assert.deepEqual(await restartOrphanedMessages({ olderThanMs: 60_000, limit: 2, applicationId, budgetMs: 0 }), { checked: 2, started: 2, failed: 0, errors: 0 });
  // With the default budget it pages on to the end: the five left are started, none looked at twice.
  assert.deepEqual(await restartOrphanedMessages({ olderThanMs: 60_000, limit: 2, applicationId }), { checked: 5, started: 5, failed: 0, errors: 0 });
  for (const id of orphans) await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).describe();
  await eventually(async () => (await app.deps.db("messages").whereIn("id", orphans).where("status", "successful")).length === orphans.length, 30_000, 200);
  // The rotation reached its end, so the next pass starts over at the oldest.
  assert.equal(await app.deps.db("reconciler_cursors").where("name", `messages:pending:${applicationId}`).first(), undefined);
});

/**
 * Runs DDL on the shared `messages` table in short lock attempts: a statement waiting for its
 * table lock queues every other query on the table behind it, and a test file running beside
 * this one holds row locks across slow provider calls; a long wait here would stall its timings.
 */
async function ddlWithoutStalling(sql: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await app.deps.db.transaction(async (trx) => {
        await trx.raw("SET LOCAL lock_timeout = '200ms'");
        await trx.raw(sql);
      });
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== "55P03" || attempt >= 200) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Two errored messages whose workflows an operator terminated: `[older, newer]`, 20 and 10 minutes old. */
async function terminatedErroredPair(apiKey: string): Promise<[string, string]> {
  const down = await createPushSubscription(app, apiKey, { token: simulatorToken("down") });
  const ids: string[] = [];
  for (const body of ["older", "newer"]) {
    const res = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: down.id, body } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    ids.push(res.body.data.message_id);
  }
  await eventually(async () => (await app.deps.db("messages").whereIn("id", ids).where("status", "errored")).length === 2, 15_000, 100);
  for (const id of ids) await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).terminate("operator stopped it");
  await app.deps.db("messages").where("id", ids[0]!).update({ created_at: app.deps.db.raw("now() - interval '20 minutes'") });
  await app.deps.db("messages").where("id", ids[1]!).update({ created_at: app.deps.db.raw("now() - interval '10 minutes'") });
  return ids as [string, string];
}

/** Runs `body` while PostgreSQL refuses every change to message `id` (as a constraint added later might). */
async function whileRowRefusesChanges(id: string, body: () => Promise<void>): Promise<void> {
  const trigger = `reconciler_test_refuse_${id.replace(/-/g, "")}`;
  await app.deps.db.raw(`CREATE FUNCTION ${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'this row cannot change'; END $$`);
  await ddlWithoutStalling(`CREATE TRIGGER ${trigger} BEFORE UPDATE ON messages FOR EACH ROW WHEN (OLD.id = '${id}') EXECUTE FUNCTION ${trigger}()`);
  try {
    await body();
  } finally {
    await ddlWithoutStalling(`DROP TRIGGER IF EXISTS ${trigger} ON messages`);
    await app.deps.db.raw(`DROP FUNCTION IF EXISTS ${trigger}()`);
  }
}

test("a message the reconciler cannot handle is logged and skipped, not a stop for the others; a pass where every message fails keeps its position", async () => {
  const { id: applicationId, apiKey } = await app.createApplication();
  const ids = await terminatedErroredPair(apiKey);
  const [poison] = ids;
  await whileRowRefusesChanges(poison, async () => {
    const { restartOrphanedMessages } = createReconcilerActivities(app.deps);
    const pass = () => restartOrphanedMessages({ olderThanMs: 60_000, limit: 2, applicationId });
    // The older one throws; the one behind it is still failed and refunded.
    assert.deepEqual(await pass(), { checked: 2, started: 0, failed: 1, errors: 1 });
    assert.deepEqual(await app.deps.db("messages").whereIn("id", ids).orderBy("created_at").pluck("status"), ["errored", "failed"]);
    // Now it is alone in its page: every message of the pass failed, so the pass fails (retried,
    // position kept) instead of reporting success.
    await assert.rejects(pass(), /this row cannot change/);
  });
});

test("a later page of a pass that fails whole ends the pass with what it did, keeping that page for the next pass", async () => {
  const { id: applicationId, apiKey } = await app.createApplication();
  const [stopped, poison] = await terminatedErroredPair(apiKey);
  await whileRowRefusesChanges(poison, async () => {
    const { restartOrphanedMessages } = createReconcilerActivities(app.deps);
    const pass = () => restartOrphanedMessages({ olderThanMs: 60_000, limit: 1, applicationId });
    // Page 1 fails the stopped one (work found, so the pass pages on); page 2 is the poison alone.
    assert.deepEqual(await pass(), { checked: 2, started: 0, failed: 1, errors: 1 });
    assert.equal((await app.deps.db("messages").where("id", stopped).first()).error_code, "workflow_closed");
    // Page 2's position was not taken: the next pass starts at the poison, alone, and fails.
    assert.equal((await app.deps.db("reconciler_cursors").where("name", `messages:errored:${applicationId}`).first("after_id"))?.after_id, stopped);
    await assert.rejects(pass(), /this row cannot change/);
  });
});

test("a sent message whose workflow closed before its receipt window ended is failed (receipt_timeout) once the window is over, not left successful for ever", async () => {
  const { id: applicationId, apiKey } = await app.createApplication({ quota: { daily_quota: 10 } });
  const sub = await createPushSubscription(app, apiKey, { token: simulatorToken("ok") });
  const sendOne = async (body: string) => {
    const res = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: sub.id, body } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const id: string = res.body.data.message_id;
    await eventually(async () => (await app.deps.db("messages").where("id", id).first()).status === "successful", 15_000, 100);
    // An operator terminates the workflow while it waits for the receipt (1 h here).
    await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).terminate("operator stopped it");
    return id;
  };
  const overdue = await sendOne("window over");
  const waiting = await sendOne("window still open");
  // Sent two hours ago: its 1 h window ended an hour ago.
  await app.deps.db("messages").where("id", overdue).update({ sent_at: new Date(Date.now() - 2 * 3_600_000) });

  const { expireOverdueReceipts } = createReconcilerActivities(app.deps);
  assert.deepEqual(await expireOverdueReceipts({ olderThanMs: 60_000, limit: 500, applicationId }), { expired: 1 });
  const view = async (id: string) => (await app.request("GET", `/messages/${id}`, { key: apiKey })).body.data;
  const expired = await view(overdue);
  assert.deepEqual([expired.status, expired.error_code], ["failed", "receipt_timeout"]);
  assert.equal((await view(waiting)).status, "successful", "its window is still open: a receipt may come");
  // It was sent: its quota stays used. A late receipt is refused like one after a workflow's own expiry.
  assert.equal((await quotaStatus(app.deps.db, applicationId)).daily!.used, 2);
  const late = await app.request("POST", `/messages/${overdue}/status`, { key: apiKey, body: { status: "received" } });
  assert.equal(late.status, 400, JSON.stringify(late.body));
  const onTime = await app.request("POST", `/messages/${waiting}/status`, { key: apiKey, body: { status: "received" } });
  assert.deepEqual([onTime.status, onTime.body.data?.status], [200, "received"]);
  // The next pass has nothing left to do.
  assert.deepEqual(await expireOverdueReceipts({ olderThanMs: 60_000, limit: 500, applicationId }), { expired: 0 });
  const events = (await app.deps.db("message_events").where("message_id", overdue).orderBy("created_at").pluck("event_type")) as string[];
  assert.equal(events.at(-1), "failed");
});
