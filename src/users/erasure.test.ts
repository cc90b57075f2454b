import crypto from "node:crypto";
import type { Knex } from "knex";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { eventually, startTestApp, type TestApp } from "../../test/support/harness";
import { newId } from "../db/ids";
import { createReconcilerActivities, pendingErasureRequests } from "../../activities/reconciler";
import { campaignsNaming, createUserErasureActivities, ERASURE_MESSAGE_BATCH } from "../../activities/user-erasure";
import { MockActivityEnvironment } from "@temporalio/testing";
import { ApplicationFailure } from "@temporalio/common";
import { deviceTokenContext } from "../subscriptions/device-token";
import { ERRORED_RETRY_CLASS_SQL } from "../messages/retry-policy";
import { userErasureWorkflow, userErasureWorkflowId } from "../../workflows/user-erasure";

let app: TestApp;
let tenant: { id: string; apiKey: string };

before(async () => {
  app = await startTestApp({ worker: true });
  tenant = await app.createApplication();
});
after(async () => {
  await app.close();
});

const ext = (label: string): string => `${label}-${crypto.randomUUID()}@example.com`;

async function insertSubscription(target: TestApp, applicationId: string): Promise<string> {
  const id = newId();
  const token = crypto.randomBytes(32).toString("hex");
  await target.deps.db("subscriptions").insert({
    id,
    application_id: applicationId,
    subscription_type: "iOSPush",
    token_ciphertext: target.deps.secrets.encrypt(token, deviceTokenContext(applicationId)),
    token_hash: target.deps.secrets.hash(token),
    subscription_status: 1,
    subscribed_at: new Date(),
    device_model: "iPhone15,2",
    tags: JSON.stringify({ vip: true }),
  });
  return id;
}

async function insertMessage(target: TestApp, fields: Record<string, unknown>): Promise<string> {
  const id = newId();
  await target.deps.db("messages").insert({
    id,
    channel: "push",
    subscription_type: "iOSPush",
    status: "received",
    title: "Hello Jane",
    body: "Your order #123 to 1 Main St has shipped",
    data: JSON.stringify({ order_id: "123", name: "Jane" }),
    options: JSON.stringify({ variables: { name: "Jane" }, sound: "default" }),
    provider: "apns",
    provider_message_id: crypto.randomUUID(),
    idempotency_key: `order-shipped-${crypto.randomUUID()}`,
    request_hash: crypto.createHash("sha256").update("jane's request").digest("hex"),
    error_details: JSON.stringify({ token_suffix: "abcd" }),
    attempts: 1,
    sent_at: new Date(),
    received_at: new Date(),
    ...fields,
  });
  // Explicit times: inserted by one statement, both would get the same now() and no order.
  const sentAt = new Date(Date.now() - 1_000);
  await target.deps.db("message_events").insert([
    { id: newId(), message_id: id, application_id: fields.application_id, event_type: "sent", from_status: "pending", to_status: "successful", data: JSON.stringify({ apns_id: "x" }), created_at: sentAt },
    { id: newId(), message_id: id, application_id: fields.application_id, event_type: "received", from_status: "successful", to_status: "received", data: JSON.stringify({ device: "Jane's phone" }), created_at: new Date() },
  ]);
  return id;
}

async function identify(target: TestApp, key: string, externalId: string, subscriptions: string[] = []): Promise<string> {
  const res = await target.request("POST", "/users/identify", { key, body: { external_id: externalId, subscriptions } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data.user_id;
}

async function waitForCompletion(target: TestApp, key: string, requestId: string, timeoutMs = 30_000): Promise<any> {
  return eventually(async () => {
    const res = await target.request("GET", `/users/erasure-requests/${requestId}`, { key });
    return res.body.data?.status === "completed" ? res.body.data : undefined;
  }, timeoutMs, 200);
}

test("an errored message without a retry class (its details erased before erasure kept it) is retried as network, never by no class", async () => {
  const cases: Array<[details: Record<string, unknown>, retryClass: string]> = [
    [{ class: "rate_limited" }, "rate_limited"],
    [{ class: "provider_outage", code: "ServiceUnavailable" }, "provider_outage"],
    [{}, "network"],
    [{ class: "bogus" }, "network"],
  ];
  for (const [details, retryClass] of cases) {
    const row = await app.deps.db.raw(`SELECT ${ERRORED_RETRY_CLASS_SQL} AS class FROM (SELECT ?::jsonb AS error_details) m`, [JSON.stringify(details)]);
    assert.equal(row.rows[0].class, retryClass, JSON.stringify(details));
  }
});

describe("GDPR erasure (DELETE /users/:external_id)", () => {
  test("end to end: user and subscriptions deleted, messages kept but emptied of personal content", async () => {
    const externalId = ext("jane");
    const [s1, s2, s3] = [await insertSubscription(app, tenant.id), await insertSubscription(app, tenant.id), await insertSubscription(app, tenant.id)];
    // An anonymous message to s1 from before Jane logged in: her device, her content.
    const anonymous = await insertMessage(app, { application_id: tenant.id, subscription_id: s1 });
    const userId = await identify(app, tenant.apiKey, externalId, [s1, s2, s3]);
    // s3 is a device Jane logged out of: it outlives her, but must stop naming her.
    await app.request("POST", "/users/logout", { key: tenant.apiKey, body: { subscriptions: [s3] } });
    const mine = [
      await insertMessage(app, { application_id: tenant.id, subscription_id: s1, user_id: userId }),
      await insertMessage(app, { application_id: tenant.id, subscription_id: s2, user_id: userId, status: "failed", error_code: "BadDeviceToken", error_message: "token for Jane rejected", failed_at: new Date() }),
      await insertMessage(app, { application_id: tenant.id, subscription_id: s3, user_id: userId }),
    ];
    // A campaign message waiting for its retry: it keeps what its batch retries it by, nothing else.
    const waiting = await insertMessage(app, {
      application_id: tenant.id,
      subscription_id: s1,
      user_id: userId,
      status: "errored",
      received_at: null,
      error_code: "TooManyRequests",
      error_details: JSON.stringify({ class: "rate_limited", code: "TooManyRequests", retry_after_ms: 5_000, token_suffix: "abcd" }),
    });
    // Another user's message and device must be untouched.
    const otherSub = await insertSubscription(app, tenant.id);
    const john = ext("john");
    const otherUser = await identify(app, tenant.apiKey, john, [otherSub]);
    const theirs = await insertMessage(app, { application_id: tenant.id, subscription_id: otherSub, user_id: otherUser });
    // A campaign for next week naming her and John: after the erasure it still goes to John only.
    const campaign = await app.request("POST", "/campaigns", {
      key: tenant.apiKey,
      headers: { "Idempotency-Key": `weekly-${crypto.randomUUID()}` },
      body: { name: "weekly", title: "Hi", body: "News", scheduled_at: new Date(Date.now() + 7 * 86_400_000).toISOString(), targeting_criteria: { external_ids: [externalId, john] } },
    });
    assert.equal(campaign.status, 201, JSON.stringify(campaign.body));
    const campaignId = campaign.body.data.campaign_id as string;

    const del = await app.request("DELETE", `/users/${encodeURIComponent(externalId)}`, { key: tenant.apiKey });
    assert.equal(del.status, 202);
    assert.equal(del.body.data.status, "pending");
    assert.ok(del.body.data.request_id);
    assert.equal(typeof del.body.data.message, "string");

    const done = await waitForCompletion(app, tenant.apiKey, del.body.data.request_id);
    assert.ok(done.completed_at);
    assert.deepEqual(done.result, { users: 1, subscriptions: 2, messages_scrubbed: 5, subscription_events_scrubbed: 2 });

    const db = app.deps.db;
    assert.equal(await db("users").where({ id: userId }).first(), undefined);
    assert.equal((await db("subscriptions").whereIn("id", [s1, s2])).length, 0);
    assert.equal((await db("subscription_events").whereIn("subscription_id", [s1, s2])).length, 0);

    for (const id of [anonymous, ...mine]) {
      const m = await db("messages").where({ id }).first();
      assert.ok(m, "the message row is kept");
      assert.equal(m.title, null);
      assert.equal(m.body, null);
      assert.deepEqual(m.data, {});
      assert.deepEqual(m.options, {});
      assert.deepEqual(m.error_details, {});
      assert.equal(m.error_message, null);
      assert.equal(m.idempotency_key, null);
      assert.equal(m.request_hash, null);
      assert.equal(m.provider_message_id, null);
      assert.equal(m.user_id, null);
      assert.equal(m.subscription_id, null);
      assert.equal(m.provider, "apns");
      assert.ok(m.sent_at);
      const events = await db("message_events").where({ message_id: id }).orderBy("created_at");
      assert.equal(events.length, 2, "event rows (the counts) are kept");
      assert.deepEqual(
        events.map((e: { to_status: string }) => e.to_status),
        ["successful", "received"],
      );
      for (const e of events) assert.deepEqual(e.data, {});
    }
    const waitingRow = await db("messages").where({ id: waiting }).first();
    assert.deepEqual([waitingRow.status, waitingRow.body, waitingRow.error_details], ["errored", null, { class: "rate_limited", code: "TooManyRequests", retry_after_ms: 5_000 }]);
    assert.equal((await db("messages").where({ id: mine[1] }).first()).status, "failed");
    assert.equal((await db("messages").where({ id: mine[1] }).first()).error_code, "BadDeviceToken");

    const other = await db("messages").where({ id: theirs }).first();
    assert.equal(other.title, "Hello Jane");
    assert.equal(other.user_id, otherUser);
    assert.ok(await db("subscriptions").where({ id: otherSub }).first());

    // The logged-out device survives, but nothing left in the database names her.
    assert.ok(await db("subscriptions").where({ id: s3 }).first());
    const s3Events = await db("subscription_events").where({ subscription_id: s3 }).orderBy("created_at");
    assert.deepEqual(
      s3Events.map((e: { event_type: string }) => e.event_type),
      ["user_linked", "user_unlinked"],
    );
    for (const e of s3Events) {
      assert.equal(e.user_id, null);
      assert.deepEqual(e.data, {});
    }
    const tables = ["users", "subscriptions", "subscription_events", "messages", "message_events", "message_campaigns"];
    for (const table of tables) {
      const hits = await db(table).whereRaw(`${table}::text like ?`, [`%${externalId}%`]);
      assert.equal(hits.length, 0, `${table} still mentions the external id`);
      const byId = await db(table).whereRaw(`${table}::text like ?`, [`%${userId}%`]);
      assert.equal(byId.length, 0, `${table} still mentions the user id`);
    }
    const kept = await app.request("GET", `/campaigns/${campaignId}`, { key: tenant.apiKey });
    assert.equal(kept.status, 200, JSON.stringify(kept.body));
    assert.deepEqual(kept.body.data.targeting_criteria.external_ids, [`erased:${del.body.data.request_id}`, john]);
    assert.equal((await db("message_campaigns").where({ id: campaignId }).first()).request_hash, null, "its fingerprint hashed her id");
    const estimate = await app.request("POST", "/campaigns/estimate", { key: tenant.apiKey, body: { targeting_criteria: kept.body.data.targeting_criteria } });
    assert.equal(estimate.body.data.total, 1, "John's device only");
    const request = await db("erasure_requests").where({ id: del.body.data.request_id }).first();
    assert.equal(request.user_id, null);
    assert.equal(request.status, "completed");

    // The user is gone. A DELETE retried after its 202 was lost answers the request that erased
    // them (its id, completed), and starts nothing; a never-known id is still a 404.
    const retried = await app.request("DELETE", `/users/${encodeURIComponent(externalId)}`, { key: tenant.apiKey });
    assert.deepEqual([retried.status, retried.body.data?.request_id, retried.body.data?.status], [202, del.body.data.request_id, "completed"]);
    assert.equal((await db("erasure_requests").where({ application_id: tenant.id, external_id: externalId })).length, 1);
    assert.equal((await app.request("DELETE", `/users/${encodeURIComponent(ext("nobody"))}`, { key: tenant.apiKey })).status, 404);
    assert.equal((await app.request("GET", `/users/${encodeURIComponent(externalId)}/subscriptions`, { key: tenant.apiKey })).status, 404);
    // Identifying again makes a brand-new user, whom a DELETE erases with a request of its own.
    assert.notEqual(await identify(app, tenant.apiKey, externalId), userId);
    const again = await app.request("DELETE", `/users/${encodeURIComponent(externalId)}`, { key: tenant.apiKey });
    assert.equal(again.status, 202);
    assert.notEqual(again.body.data.request_id, del.body.data.request_id);
  });

  /**
   * The DELETE through a second API on the same database whose Temporal namespace does not exist:
   * the real server refuses every workflow start, as it does while Temporal is down for the API.
   */
  async function deleteThroughRefusingTemporal(externalId: string) {
    const refusing = await startTestApp({ env: { TEMPORAL_NAMESPACE: `missing-${crypto.randomUUID()}` } });
    try {
      return await refusing.request("DELETE", `/users/${encodeURIComponent(externalId)}`, { key: tenant.apiKey });
    } finally {
      await refusing.close();
    }
  }

  test("if Temporal refuses the start: 503 with the request id, the row stays pending, a retried DELETE resumes it", async () => {
    const externalId = ext("retry");
    const sub = await insertSubscription(app, tenant.id);
    const userId = await identify(app, tenant.apiKey, externalId, [sub]);
    const failed = await deleteThroughRefusingTemporal(externalId);
    assert.equal(failed.status, 503);
    assert.equal(failed.body.error.code, "service_unavailable");
    assert.ok(failed.headers.get("retry-after"));
    const requestId = failed.body.error.details.request_id;
    const row = await app.deps.db("erasure_requests").where({ id: requestId }).first();
    assert.equal(row.status, "pending");
    assert.equal(row.workflow_id, null);
    assert.ok(await app.deps.db("users").where({ id: userId }).first(), "nothing erased yet");

    const retried = await app.request("DELETE", `/users/${encodeURIComponent(externalId)}`, { key: tenant.apiKey });
    assert.equal(retried.status, 202);
    assert.equal(retried.body.data.request_id, requestId);
    const done = await waitForCompletion(app, tenant.apiKey, requestId);
    assert.deepEqual(done.result, { users: 1, subscriptions: 1, messages_scrubbed: 0, subscription_events_scrubbed: 0 });
    assert.equal((await app.deps.db("erasure_requests").where({ application_id: tenant.id, external_id: externalId })).length, 1);
    assert.equal(await app.deps.db("subscriptions").where({ id: sub }).first(), undefined);
  });

  test("a pending request nobody retried is started by the reconciler and completes", async () => {
    const externalId = ext("orphan");
    const sub = await insertSubscription(app, tenant.id);
    await identify(app, tenant.apiKey, externalId, [sub]);
    const failed = await deleteThroughRefusingTemporal(externalId);
    assert.equal(failed.status, 503);
    const requestId = failed.body.error.details.request_id;
    // The client gives up; the request ages past the reconciler's threshold.
    await app.deps.db("erasure_requests").where({ id: requestId }).update({ requested_at: new Date(Date.now() - 10 * 60_000) });
    const { restartPendingErasures } = createReconcilerActivities(app.deps);
    const pass = await restartPendingErasures({ olderThanMs: 60_000, limit: 500, applicationId: tenant.id });
    assert.deepEqual(pass, { checked: 1, started: 1, failed: 0 });
    const done = await waitForCompletion(app, tenant.apiKey, requestId);
    assert.equal(done.result.users, 1);
    assert.equal(await app.deps.db("subscriptions").where({ id: sub }).first(), undefined);
    // Completed requests are not picked up again.
    const again = await restartPendingErasures({ olderThanMs: 60_000, limit: 500, applicationId: tenant.id });
    assert.deepEqual(again, { checked: 0, started: 0, failed: 0 });
    assert.equal((await app.deps.db("erasure_requests").where({ id: requestId }).first()).status, "completed");
  });

  test("a request left running by a workflow an operator terminated is started again by the reconciler and completes; one whose workflow still runs is left to it", async () => {
    // Two requests whose workflows got going (marked running) on a queue no worker polls.
    const requests: Array<{ requestId: string; sub: string }> = [];
    for (const label of ["terminated", "retrying"]) {
      const externalId = ext(label);
      const sub = await insertSubscription(app, tenant.id);
      await identify(app, tenant.apiKey, externalId, [sub]);
      const failed = await deleteThroughRefusingTemporal(externalId);
      assert.equal(failed.status, 503);
      const requestId = failed.body.error.details.request_id as string;
      await app.deps.db("erasure_requests").where({ id: requestId }).update({ status: "running", requested_at: new Date(Date.now() - 10 * 60_000) });
      await app.deps.temporal.workflow.start(userErasureWorkflow, { taskQueue: `no-worker-${crypto.randomUUID()}`, workflowId: userErasureWorkflowId(requestId), args: [requestId] });
      requests.push({ requestId, sub });
    }
    const [terminated, retrying] = requests as [(typeof requests)[number], (typeof requests)[number]];
    await app.deps.temporal.workflow.getHandle(userErasureWorkflowId(terminated.requestId)).terminate("an operator stopped a step that kept failing");
    try {
      const { restartPendingErasures } = createReconcilerActivities(app.deps);
      const pass = await restartPendingErasures({ olderThanMs: 60_000, limit: 500, applicationId: tenant.id });
      assert.deepEqual(pass, { checked: 2, started: 1, failed: 0 });
      const done = await waitForCompletion(app, tenant.apiKey, terminated.requestId);
      assert.equal(done.result.users, 1);
      assert.equal(await app.deps.db("subscriptions").where({ id: terminated.sub }).first(), undefined);
      assert.equal((await app.deps.temporal.workflow.getHandle(userErasureWorkflowId(retrying.requestId)).describe()).status.name, "RUNNING", "the running workflow was left alone");
      assert.equal((await app.deps.db("erasure_requests").where({ id: retrying.requestId }).first()).status, "running");
    } finally {
      await app.deps.temporal.workflow.getHandle(userErasureWorkflowId(retrying.requestId)).terminate("test over").catch(() => undefined);
      // Not left for the reconciler passes of the tests after this one.
      await app.deps.db("erasure_requests").where({ id: retrying.requestId }).delete();
    }
  });

  test("a disable of a device while its user's erasure holds the user (the erasure locks user, then devices) is re-run as the deadlock victim, not answered 503", async () => {
    const externalId = ext("deadlock");
    const sub = await insertSubscription(app, tenant.id);
    const userId = await identify(app, tenant.apiKey, externalId, [sub]);
    const erasure = await app.deps.db.transaction();
    let disabling: ReturnType<typeof app.request> | undefined;
    try {
      await erasure("users").where({ id: userId }).forUpdate().first("id");
      const erasurePid = ((await erasure.raw("select pg_backend_pid() as pid")).rows[0] as { pid: number }).pid;
      disabling = app.request("POST", `/subscriptions/${sub}/disable`, { key: tenant.apiKey });
      // The disable holds the device and waits for the user (its event's foreign key share-locks it).
      await eventually(async () => ((await app.deps.db.raw("select 1 from pg_stat_activity where ? = any(pg_blocking_pids(pid))", [erasurePid])).rows.length > 0 ? true : undefined), 10_000, 20);
      // The erasure's next step takes the user's devices: a deadlock, which the disable (waiting
      // longer, so checking first) loses.
      await erasure("subscriptions").where({ id: sub }).forUpdate().first("id");
    } finally {
      await erasure.rollback();
    }
    const res = await disabling!;
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal((await app.deps.db("subscriptions").where({ id: sub }).first()).subscription_status, -2);
  });

  test("a request made while no worker runs completes once a worker starts on the task queue", async () => {
    const apiOnly = await startTestApp();
    let worker: TestApp | undefined;
    try {
      const own = await apiOnly.createApplication();
      const externalId = ext("durable");
      const sub = await insertSubscription(apiOnly, own.id);
      const userId = await identify(apiOnly, own.apiKey, externalId, [sub]);
      const message = await insertMessage(apiOnly, { application_id: own.id, subscription_id: sub, user_id: userId });
      const del = await apiOnly.request("DELETE", `/users/${encodeURIComponent(externalId)}`, { key: own.apiKey });
      assert.equal(del.status, 202);
      const requestId = del.body.data.request_id;
      await new Promise((r) => setTimeout(r, 1500));
      const waiting = await apiOnly.request("GET", `/users/erasure-requests/${requestId}`, { key: own.apiKey });
      assert.equal(waiting.body.data.status, "pending", "no worker polls this task queue yet");
      assert.ok(await apiOnly.deps.db("users").where({ id: userId }).first());

      worker = await startTestApp({ worker: true, env: { TEMPORAL_TASK_QUEUE: apiOnly.config.TEMPORAL_TASK_QUEUE } });
      const done = await waitForCompletion(apiOnly, own.apiKey, requestId, 60_000);
      assert.deepEqual(done.result, { users: 1, subscriptions: 1, messages_scrubbed: 1, subscription_events_scrubbed: 0 });
      assert.equal(await apiOnly.deps.db("users").where({ id: userId }).first(), undefined);
      const m = await apiOnly.deps.db("messages").where({ id: message }).first();
      assert.equal(m.title, null);
      assert.equal(m.status, "received");
    } finally {
      await worker?.close();
      await apiOnly.close();
    }
  });

  test("the final step takes a send's order (message, then subscription): a send in flight holding the message can still mark the device dead", async () => {
    const externalId = ext("in-flight");
    const sub = await insertSubscription(app, tenant.id);
    const userId = await identify(app, tenant.apiKey, externalId, [sub]);
    const message = await insertMessage(app, { application_id: tenant.id, subscription_id: sub, user_id: userId, status: "pending", sent_at: null, received_at: null });
    const requestId = newId();
    await app.deps.db("erasure_requests").insert({ id: requestId, application_id: tenant.id, external_id: externalId, user_id: userId, status: "running" });
    // A campaign chunk's transaction: it holds its message while the provider answers...
    const send = await app.deps.db.transaction();
    try {
      await send("messages").where("id", message).forUpdate().first("id");
      const sendPid = (await send.raw("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
      const erasure = createUserErasureActivities(app.deps).eraseUserData(requestId);
      const erased = erasure.then(() => "erased" as const, (error: unknown) => error);
      // ...the erasure's final step now waits for that message...
      await eventually(async () => {
        const waiting = await app.deps.db.raw("SELECT count(*)::int AS n FROM pg_stat_activity WHERE ?::int = ANY(pg_blocking_pids(pid))", [sendPid]);
        return waiting.rows[0].n > 0;
      }, 10_000, 50);
      // ...and the provider says the token is dead: the send locks the subscription to mark it.
      // Had the erasure locked the subscription first, this would wait on it (a deadlock).
      await send.raw("SET LOCAL lock_timeout = '3s'");
      await send("subscriptions").where("id", sub).update({ subscription_status: -10 });
      await send.commit();
      assert.equal(await erased, "erased");
    } finally {
      if (!send.isCompleted()) await send.rollback();
    }
    assert.equal((await app.deps.db("subscriptions").where("id", sub)).length, 0, "the erasure went on and deleted the device");
    assert.equal((await app.deps.db("messages").where("id", message).first("title")).title, null);
  });

  test("a user with more messages than one batch is fully scrubbed", async () => {
    const externalId = ext("heavy");
    const sub = await insertSubscription(app, tenant.id);
    const userId = await identify(app, tenant.apiKey, externalId, [sub]);
    const rows = Array.from({ length: 2500 }, () => ({
      id: newId(),
      application_id: tenant.id,
      subscription_id: sub,
      user_id: userId,
      status: "successful",
      title: "Hi Jane",
      body: "private",
      data: JSON.stringify({ k: "v" }),
    }));
    await app.deps.db.batchInsert("messages", rows, 500);
    const del = await app.request("DELETE", `/users/${encodeURIComponent(externalId)}`, { key: tenant.apiKey });
    const done = await waitForCompletion(app, tenant.apiKey, del.body.data.request_id, 60_000);
    assert.equal(done.result.messages_scrubbed, 2500);
    const [left] = await app.deps.db("messages").whereIn("id", rows.map((r) => r.id)).whereNotNull("title").count<{ count: number }[]>({ count: "*" });
    assert.equal(Number(left?.count), 0);
    const [kept] = await app.deps.db("messages").whereIn("id", rows.map((r) => r.id)).where({ status: "successful" }).count<{ count: number }[]>({ count: "*" });
    assert.equal(Number(kept?.count), 2500);
  });

  test("a worker shutting down stops the message scrub between batches, and the retry goes on from there", async () => {
    const externalId = ext("shutdown");
    const sub = await insertSubscription(app, tenant.id);
    const userId = await identify(app, tenant.apiKey, externalId, [sub]);
    const rows = Array.from({ length: ERASURE_MESSAGE_BATCH + 500 }, () => ({ id: newId(), application_id: tenant.id, subscription_id: sub, user_id: userId, status: "successful", title: "Hi Jane", body: "private" }));
    await app.deps.db.batchInsert("messages", rows, 500);
    // The request as the workflow's first step leaves it (no workflow here: the activity is run alone).
    const [request] = await app.deps.db("erasure_requests").insert({ application_id: tenant.id, external_id: externalId, status: "running" }).returning<Array<{ id: string }>>("id");
    const { scrubUserMessages } = createUserErasureActivities(app.deps);
    const titled = async () => Number((await app.deps.db("messages").whereIn("id", rows.map((r) => r.id)).whereNotNull("title").count<{ count: string }[]>({ count: "*" }))[0]!.count);

    // The shutdown lands while the first batch commits.
    const attempt = new MockActivityEnvironment();
    attempt.once("heartbeat", () => attempt.cancel("WORKER_SHUTDOWN"));
    await assert.rejects(attempt.run(scrubUserMessages, request!.id), (error: Error) => error instanceof ApplicationFailure && error.type === "ErasureStopped");
    assert.equal(await titled(), 500, "the first batch committed, the rest waits");
    assert.equal((await app.deps.db("erasure_requests").where("id", request!.id).first()).result.messages_scrubbed, ERASURE_MESSAGE_BATCH);

    assert.equal(await new MockActivityEnvironment().run(scrubUserMessages, request!.id), 500);
    assert.equal(await titled(), 0);
  });
});

describe("lookups over tables that keep growing", () => {
  /** The plan PostgreSQL picks for a query, as text. */
  async function planOf(query: Knex.QueryBuilder): Promise<string> {
    const { sql, bindings } = query.toSQL();
    const rows = (await app.deps.db.raw(`EXPLAIN ${sql}`, bindings)).rows as Array<{ "QUERY PLAN": string }>;
    return rows.map((r) => r["QUERY PLAN"]).join("\n");
  }

  test("an erasure finds the campaigns naming the user through the id-list index, not by reading every run of the application's recurring campaigns", async () => {
    // A year of an hourly recurring campaign: its runs copy the parent's external ids; one names the user.
    const ids = Array.from({ length: 10 }, () => crypto.randomUUID());
    const rows = Array.from({ length: 8_760 }, (_, i) => ({
      id: newId(),
      application_id: tenant.id,
      name: `run ${i}`,
      status: "completed",
      content: JSON.stringify({ title: "t", body: "b", data: {} }),
      targeting_criteria: JSON.stringify({ external_ids: i === 1_234 ? [...ids, "the-user"] : ids }),
    }));
    for (let i = 0; i < rows.length; i += 1_000) await app.deps.db("message_campaigns").insert(rows.slice(i, i + 1_000));
    // As autovacuum keeps it: the GIN index's pending list folded in, statistics current.
    await app.deps.db.raw("VACUUM ANALYZE message_campaigns");
    const lookup = campaignsNaming(app.deps.db, tenant.id, "the-user").select("id");
    assert.match(await planOf(lookup), /message_campaigns_targeted_external_ids_idx/);
    assert.deepEqual((await lookup).map((r: { id: string }) => r.id), [rows[1_234]!.id]);
  });

  test("the reconciler reads pending erasure requests through their partial index, not every request ever made", async () => {
    const done = Array.from({ length: 5_000 }, () => ({ id: newId(), application_id: tenant.id, external_id: `gone-${newId()}`, status: "completed", requested_at: new Date(Date.now() - 86_400_000) }));
    for (let i = 0; i < done.length; i += 1_000) await app.deps.db("erasure_requests").insert(done.slice(i, i + 1_000));
    await app.deps.db.raw("VACUUM ANALYZE erasure_requests");
    assert.match(await planOf(pendingErasureRequests(app.deps.db, { olderThanMs: 60_000, limit: 50 }).select("id", "application_id")), /erasure_requests_pending_idx/);
  });
});
