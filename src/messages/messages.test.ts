import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { createPushSubscription, seedPushSubscriptions, simulatorToken } from "../../test/support/fixtures";
import { MAX_DEVICES_PER_SEND } from "./accept";
import { messageWorkflowId } from "../../workflows/message";
import { ledgerInvariant } from "../quota/quota";
import { newId } from "../db/ids";
import { startMessageWorkflows } from "./workflow-client";
import { ApplicationIdKey, MessageIdKey, MessageStatusKey, SubscriptionIdKey } from "../../temporal/search-attributes";
import { insertRunningCampaign } from "../../test/support/campaigns";

// Short lifecycle windows and retry backoffs scaled down 10,000× so every failure class runs in seconds.
const TIMING = { AUTOMATA_RECEIPT_TIMEOUT: "3s", AUTOMATA_CONVERSION_WINDOW: "2s", AUTOMATA_RETRY_SCALE: "0.0001", AUTOMATA_PENDING_TIMEOUT: "1h" };

let app: TestApp;
let apiKey: string;

/** These tests poll the API; the enterprise tier (5,000/min) keeps long retry tests under the limit. */
function createApp(body: Record<string, unknown> = {}) {
  return app.createApplication({ rate_limit_tier: "enterprise", ...body });
}

before(async () => {
  app = await startTestApp({ worker: true, env: TIMING });
  ({ apiKey } = await createApp());
});
after(async () => {
  await app.close();
});

async function send(body: Record<string, unknown>, key = apiKey, headers: Record<string, string> = {}) {
  return app.request("POST", "/messages", { key, body, headers });
}

async function messageOf(id: string, key = apiKey) {
  const res = await app.request("GET", `/messages/${id}`, { key });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.data;
}

async function waitForStatus(id: string, status: string, timeoutMs = 20_000, key = apiKey) {
  return eventually(async () => {
    const message = await messageOf(id, key);
    return message.status === status ? message : undefined;
  }, timeoutMs, 250);
}

async function workflowResult(id: string) {
  return app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).result();
}

describe("happy path", () => {
  test("iOS: pending → successful → received → converted, with events, search attributes and counters", async () => {
    const sub = await createPushSubscription(app, apiKey, { type: "iOSPush" });
    const accepted = await send({ subscription_id: sub.id, title: "Hello", body: "World", data: { order_id: "ORD-1" }, badge: 3, sound: "default" });
    assert.equal(accepted.status, 201);
    assert.equal(accepted.body.data.status, "pending");
    const id = accepted.body.data.message_id;

    const sent = await waitForStatus(id, "successful");
    assert.ok(sent.sent_at);
    assert.ok(sent.provider_message_id);
    assert.deepEqual(sent.events.map((e: { event_type: string }) => e.event_type), ["created", "sent"]);
    const payload = app.simulator!.simulator.lastPayloadFor(sub.token)!;
    assert.equal((payload.body as Record<string, unknown>).automata_message_id, id);
    assert.equal(payload.headers["apns-collapse-id"], id);
    assert.equal(((payload.body as { aps: { badge: number } }).aps).badge, 3);

    const description = await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).describe();
    assert.equal(description.status.name, "RUNNING");
    assert.equal(description.typedSearchAttributes.get(MessageIdKey), id);
    assert.equal(description.typedSearchAttributes.get(SubscriptionIdKey), sub.id);
    assert.ok(description.typedSearchAttributes.get(ApplicationIdKey));

    const received = await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
    assert.equal(received.status, 200);
    assert.equal(received.body.data.status, "received");
    const again = await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
    assert.equal(again.status, 200, "a repeated receipt is idempotent");
    assert.equal(again.body.data.received_at, received.body.data.received_at);

    const converted = await app.request("POST", `/messages/${id}/convert`, { key: apiKey, body: { action: "clicked_button", data: { button_id: "confirm" } } });
    assert.equal(converted.status, 200);
    assert.equal(converted.body.data.status, "converted");
    assert.ok(Date.parse(converted.body.data.converted_at) >= Date.parse(received.body.data.received_at), "converted_at is a time, not before the receipt");
    assert.equal(await workflowResult(id), "converted");
    // The workflow keeps MessageStatus current (checked after the 3 s receipt window, not inside it).
    await eventually(async () => (await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).describe()).typedSearchAttributes.get(MessageStatusKey) === "converted");

    const final = await messageOf(id);
    assert.deepEqual(final.events.map((e: { event_type: string }) => e.event_type), ["created", "sent", "received", "converted"]);
    // REF-001 §4.3's fields, as the contract names them.
    for (const field of ["id", "subscription_id", "title", "body", "data", "status", "created_at", "sent_at", "events"]) assert.ok(field in final, `GET /messages/:id has ${field}`);
    assert.deepEqual([final.id, final.subscription_id, final.title, final.body, final.data], [id, sub.id, "Hello", "World", { order_id: "ORD-1" }]);
    const times = final.events.map((e: { occurred_at: string }) => Date.parse(e.occurred_at));
    assert.ok(times.every((t: number) => Number.isFinite(t)) && times.every((t: number, i: number) => i === 0 || t >= times[i - 1]!), "events carry occurred_at, in order");
    const subscription = await app.deps.db("subscriptions").where("id", sub.id).first();
    assert.equal(subscription.total_messages_received, 1);
    assert.equal(subscription.total_messages_converted, 1);
    assert.ok(subscription.last_active_at);
  });

  test("Android: FCM data values are strings and carry automata_message_id", async () => {
    const sub = await createPushSubscription(app, apiKey, { type: "AndroidPush" });
    const accepted = await send({ subscription_id: sub.id, body: "Hi", data: { n: 5, nested: { a: 1 } }, priority: "high" });
    const id = accepted.body.data.message_id;
    await waitForStatus(id, "successful");
    const { message } = app.simulator!.simulator.lastPayloadFor(sub.token)!.body as { message: { data: Record<string, string> } };
    assert.equal(message.data.automata_message_id, id);
    assert.equal(message.data.n, "5");
    assert.equal(message.data.nested, JSON.stringify({ a: 1 }));
  });

  test("the workflow finishes as received when no conversion comes within the window", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const id = (await send({ subscription_id: sub.id, body: "x" })).body.data.message_id;
    await waitForStatus(id, "successful");
    await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
    assert.equal(await workflowResult(id), "received");
  });

  test("a conversion without a receipt implies the receipt", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const id = (await send({ subscription_id: sub.id, body: "x" })).body.data.message_id;
    await waitForStatus(id, "successful");
    // A bare POST (no body, as an SDK reporting a plain open may send it) means action "opened".
    const converted = await app.request("POST", `/messages/${id}/convert`, { key: apiKey });
    assert.equal(converted.status, 200, JSON.stringify(converted.body));
    assert.equal(converted.body.data.status, "converted");
    const events = await app.deps.db("message_events").where({ message_id: id, event_type: "converted" });
    assert.equal(events[0]?.data.action, "opened");
    const message = await messageOf(id);
    assert.ok(message.received_at);
    assert.equal(await workflowResult(id), "converted");
  });
});

describe("failure classes", () => {
  test("bad token: failed at once, subscription marked -10 with an event, quota refunded", async () => {
    const { apiKey: key } = await createApp({ quota: { daily_quota: 5 } });
    const sub = await createPushSubscription(app, key, { token: simulatorToken("bad") });
    const id = (await send({ subscription_id: sub.id, body: "x" }, key)).body.data.message_id;
    const failed = await waitForStatus(id, "failed", 20_000, key);
    assert.equal(failed.error_code, "invalid_token");
    const subscription = await app.deps.db("subscriptions").where("id", sub.id).first();
    assert.ok(subscription.subscription_status < 0);
    const events = await app.deps.db("subscription_events").where({ subscription_id: sub.id, event_type: "delivery_failed" });
    assert.equal(events.length, 1);
    const usage = await app.deps.db("ledger_transfers").where("message_id", id).orderBy("created_at");
    assert.ok(usage.some((t: { reason: string }) => /refund/.test(t.reason)), "the debit is refunded");
    assert.equal(app.simulator!.simulator.requestsFor(sub.token), 1);
  });

  test("gone token (410 Unregistered): failed, subscription -10", async () => {
    const sub = await createPushSubscription(app, apiKey, { type: "AndroidPush", token: simulatorToken("gone") });
    const id = (await send({ subscription_id: sub.id, body: "x" })).body.data.message_id;
    const failed = await waitForStatus(id, "failed");
    assert.equal(failed.error_code, "unregistered");
    assert.equal((await app.deps.db("subscriptions").where("id", sub.id).first()).subscription_status, -10);
  });

  test("flaky provider: errored, retried after a backoff, then successful", async () => {
    const sub = await createPushSubscription(app, apiKey, { token: simulatorToken("flaky") });
    const id = (await send({ subscription_id: sub.id, body: "x" })).body.data.message_id;
    const sent = await waitForStatus(id, "successful");
    assert.deepEqual(sent.events.map((e: { event_type: string }) => e.event_type), ["created", "errored", "retried", "sent"]);
    assert.equal(sent.attempts, 2);
  });

  test("rate limited: 3 retries after 1, 2 and 5 (scaled) minutes, not after the provider's shorter Retry-After, then failed with retries_exhausted", async () => {
    const sub = await createPushSubscription(app, apiKey, { token: simulatorToken("busy") });
    const id = (await send({ subscription_id: sub.id, body: "x" })).body.data.message_id;
    const failed = await waitForStatus(id, "failed");
    assert.equal(failed.error_code, "retries_exhausted");
    assert.equal(app.simulator!.simulator.requestsFor(sub.token), 4);
    assert.equal(failed.events.filter((e: { event_type: string }) => e.event_type === "errored").length, 4);
    // The simulator answers `Retry-After: 1` (1 s, 0.1 ms scaled): used as the wait, it spent the
    // three retries at once while the quota was still exceeded. It only ever lengthens the wait.
    const history = await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).fetchHistory();
    const timersMs = (history.events ?? []).flatMap((e) => {
      const timeout = e.timerStartedEventAttributes?.startToFireTimeout;
      return timeout ? [Number(timeout.seconds ?? 0) * 1000 + Math.round((timeout.nanos ?? 0) / 1e6)] : [];
    });
    assert.equal(timersMs.length, 3, JSON.stringify(timersMs));
    [6, 12, 30].forEach((planned, i) => assert.ok(timersMs[i]! >= planned && timersMs[i]! <= planned * 1.2 + 1, JSON.stringify(timersMs)));
  });

  test("provider outage: retried every (scaled) 15 minutes for 24 tries, then failed", async () => {
    const sub = await createPushSubscription(app, apiKey, { token: simulatorToken("down") });
    const id = (await send({ subscription_id: sub.id, body: "x" })).body.data.message_id;
    const failed = await waitForStatus(id, "failed", 60_000);
    assert.equal(failed.error_code, "retries_exhausted");
    assert.equal(app.simulator!.simulator.requestsFor(sub.token), 24);
    // The 23 retry timers: 15 min scaled to 90 ms, each lengthened by up to 20 % jitter, so retries
    // that failed together do not wake together.
    const history = await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).fetchHistory();
    const timersMs = (history.events ?? []).flatMap((e) => {
      const timeout = e.timerStartedEventAttributes?.startToFireTimeout;
      return timeout ? [Number(timeout.seconds ?? 0) * 1000 + Math.round((timeout.nanos ?? 0) / 1e6)] : [];
    });
    assert.equal(timersMs.length, 23);
    assert.ok(timersMs.every((ms) => ms >= 90 && ms <= 108), JSON.stringify(timersMs));
    assert.ok(new Set(timersMs).size > 1, `all retries waited the same: ${JSON.stringify(timersMs)}`);
  });

  test("no receipt before the receipt timeout: failed(receipt_timeout); a late receipt is refused and changes nothing", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const id = (await send({ subscription_id: sub.id, body: "x" })).body.data.message_id;
    const failed = await waitForStatus(id, "failed", 20_000);
    assert.equal(failed.error_code, "receipt_timeout");
    assert.equal(await workflowResult(id), "failed");
    const late = await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
    assert.equal(late.status, 400);
    assert.equal(late.body.error.code, "message_already_processed");
    assert.equal((await messageOf(id)).status, "failed");
  });
});

describe("a workflow task re-run after the send committed (worker died before Temporal recorded it)", () => {
  // The re-run finds the row already past pending; these start a workflow on such a row directly.
  async function messageAlready(status: "successful" | "errored") {
    const { apiKey: key, id: applicationId } = await createApp();
    const sub = await createPushSubscription(app, key);
    const id = newId();
    await app.deps.db("messages").insert({ id, application_id: applicationId, subscription_id: sub.id, subscription_type: "iOSPush", status, body: "x", ...(status === "successful" ? { sent_at: new Date() } : {}) });
    await startMessageWorkflows(app.deps, [{ id, application_id: applicationId, subscription_id: sub.id }]);
    return { id, key, token: sub.token };
  }

  test("an already successful message still gets its receipt wait and expires without a receipt", async () => {
    const { id, key } = await messageAlready("successful");
    const handle = app.deps.temporal.workflow.getHandle(messageWorkflowId(id));
    assert.equal(await handle.result(), "failed");
    const message = await messageOf(id, key);
    assert.equal(message.status, "failed");
    assert.equal(message.error_code, "receipt_timeout");
  });

  test("a receipt for a message still pending (its sender's commit was lost, the push arrived) is kept, and the send that follows sends nothing", async () => {
    const { apiKey: key, id: applicationId } = await createApp();
    const sub = await createPushSubscription(app, key);
    const id = newId();
    await app.deps.db("messages").insert({ id, application_id: applicationId, subscription_id: sub.id, subscription_type: "iOSPush", status: "pending", body: "x" });
    const receipt = await app.request("POST", `/messages/${id}/status`, { key, body: { status: "received" } });
    assert.equal(receipt.status, 200, JSON.stringify(receipt.body));
    assert.equal(receipt.body.data.status, "received");
    const events = (await app.deps.db("message_events").where("message_id", id).orderBy("created_at").orderBy("id").pluck("event_type")) as string[];
    assert.deepEqual(events, ["sent", "received"]);
    // The re-run send finds it past pending: nothing is pushed again, and the conversion wait still applies.
    await startMessageWorkflows(app.deps, [{ id, application_id: applicationId, subscription_id: sub.id }]);
    const converted = await eventually(async () => {
      const res = await app.request("POST", `/messages/${id}/convert`, { key, body: {} });
      return res.status === 200 ? res : undefined;
    }, 10_000, 200);
    assert.equal(converted.body.data.status, "converted");
    assert.equal(await workflowResult(id), "converted");
    assert.equal(app.simulator!.simulator.requestsFor(sub.token), 0, "the device was not sent the push again");
  });

  test("an already errored message is retried and sent instead of ending errored", async () => {
    const { id, key, token } = await messageAlready("errored");
    await waitForStatus(id, "successful", 20_000, key);
    assert.equal(app.simulator!.simulator.requestsFor(token), 1);
  });
});

describe("API rules", () => {
  test("Idempotency-Key: the same key returns the first message and sends once", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const headers = { "Idempotency-Key": `key-${sub.id}` };
    const [first, second] = await Promise.all([send({ subscription_id: sub.id, body: "once" }, apiKey, headers), send({ subscription_id: sub.id, body: "once" }, apiKey, headers)]);
    assert.equal(first.status, 201);
    assert.equal(second.status, 201);
    assert.equal(first.body.data.message_id, second.body.data.message_id);
    await waitForStatus(first.body.data.message_id, "successful");
    const third = await send({ subscription_id: sub.id, body: "once" }, apiKey, headers);
    assert.equal(third.body.data.message_id, first.body.data.message_id);
    assert.equal((await app.deps.db("messages").where("subscription_id", sub.id)).length, 1);
    assert.equal(app.simulator!.simulator.requestsFor(sub.token), 1);
  });

  test("a send to a channel we cannot send yet, or to a user whose only device is unsubscribed, is refused and writes nothing", async () => {
    const externalId = `refused-${newId()}`;
    const email = await app.request("POST", "/subscriptions", { key: apiKey, body: { type: "Email", token: `${externalId}@example.com` } });
    assert.equal(email.status, 201, JSON.stringify(email.body));
    const toEmail = await send({ subscription_id: email.body.data.subscription_id, body: "not yet" });
    assert.deepEqual([toEmail.status, toEmail.body.error?.code], [400, "invalid_subscription_type"], JSON.stringify(toEmail.body));
    assert.equal((await app.deps.db("messages").where("subscription_id", email.body.data.subscription_id)).length, 0);

    const device = await createPushSubscription(app, apiKey, { externalId });
    assert.equal((await app.request("POST", `/subscriptions/${device.id}/disable`, { key: apiKey })).status, 200);
    const toUser = await send({ external_id: externalId, body: "nobody listening" });
    assert.deepEqual([toUser.status, toUser.body.error?.code], [400, "subscription_disabled"], JSON.stringify(toUser.body));
    assert.equal((await app.deps.db("messages").where("subscription_id", device.id)).length, 0);
  });

  test("ids in upper case name the same subscription and message as in lower case", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const res = await send({ subscription_id: sub.id.toUpperCase(), body: "shouting" });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.data.subscription_id, sub.id);
    const id = res.body.data.message_id as string;
    await waitForStatus(id.toUpperCase(), "successful");
    const cancel = await app.request("POST", `/messages/${id.toUpperCase()}/cancel`, { key: apiKey });
    assert.equal(cancel.body.error.code, "message_already_processed");
    assert.equal(cancel.body.error.details.id, id);
  });

  test("external_id: one message per active push subscription of the user", async () => {
    const externalId = `user-${Date.now()}`;
    const ios = await createPushSubscription(app, apiKey, { type: "iOSPush", externalId });
    const android = await createPushSubscription(app, apiKey, { type: "AndroidPush", externalId });
    const res = await send({ external_id: externalId, title: "Both", body: "devices" });
    assert.equal(res.status, 201);
    assert.equal(res.body.data.message_ids.length, 2);
    assert.deepEqual(res.body.data.messages.map((m: { subscription_id: string }) => m.subscription_id).sort(), [ios.id, android.id].sort());
    for (const id of res.body.data.message_ids) await waitForStatus(id, "successful");
    const listed = await app.request("GET", `/messages?external_id=${externalId}`, { key: apiKey });
    assert.equal(listed.body.data.pagination.total_items, 2);
  });

  test("external_id of a user with more subscribed devices than one send reaches is refused 422 pointing at campaigns, and nothing is written", async () => {
    const { apiKey: key, id: applicationId } = await createApp();
    const externalId = "guest";
    const owner = await createPushSubscription(app, key, { externalId });
    const { user_id: userId } = await app.deps.db("subscriptions").where("id", owner.id).first("user_id");
    const seeded = await seedPushSubscriptions(app, applicationId, MAX_DEVICES_PER_SEND);
    await app.deps.db("subscriptions").whereIn("id", seeded).update({ user_id: userId });
    const res = await app.request("POST", "/messages", { key, body: { external_id: externalId, body: "to everyone" } });
    assert.equal(res.status, 422, JSON.stringify(res.body));
    assert.match(res.body.error.details.fields.external_id, /more than 1000 subscribed devices.*campaign/);
    assert.equal((await app.deps.db("messages").where("application_id", applicationId)).length, 0);
  });

  test("a receipt for a row a send still holds waits at most 5 s, then answers 503 with Retry-After instead of holding the API's connection", { timeout: 60_000 }, async () => {
    const sub = await createPushSubscription(app, apiKey);
    const res = await send({ subscription_id: sub.id, body: "held" });
    const id = res.body.data.message_id as string;
    await waitForStatus(id, "successful");
    // A campaign chunk's transaction holding the row across its provider calls.
    const chunk = await app.deps.db.transaction();
    try {
      await chunk("messages").where("id", id).forUpdate().first("id");
      const started = Date.now();
      const receipt = await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
      assert.equal(receipt.status, 503, JSON.stringify(receipt.body));
      assert.equal(receipt.headers.get("retry-after"), "1");
      assert.ok(Date.now() - started < 15_000, "gave up after its lock timeout");
    } finally {
      await chunk.rollback();
    }
    // Released, the retry is answered at once (this file's 3 s receipt window has closed by now,
    // so the answer is that the message already failed, which is what the row says).
    const retried = await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
    const row = await app.deps.db("messages").where("id", id).first("status");
    if (row.status === "failed") assert.equal(retried.body.error.code, "message_already_processed", JSON.stringify(retried.body));
    else assert.equal(retried.status, 200, JSON.stringify(retried.body));
  });

  test("a message over the provider limits is refused at the API with message_too_large and nothing written", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const before = await app.deps.db("messages").where("subscription_id", sub.id);
    const res = await send({ subscription_id: sub.id, title: "t".repeat(151), body: "x" });
    assert.equal(res.status, 400);
    assert.equal(res.body.error.code, "message_too_large");
    const big = await send({ subscription_id: sub.id, body: "가".repeat(1400) });
    assert.equal(big.body.error.code, "message_too_large");
    assert.deepEqual(await app.deps.db("messages").where("subscription_id", sub.id), before);
  });

  test("an image URL FCM would refuse is refused at the API for an Android recipient, naming the request's field; iOS takes it", async () => {
    const android = await createPushSubscription(app, apiKey, { type: "AndroidPush" });
    const imageUrl = "https://my_cdn.example.com/a.png";
    const refused = await send({ subscription_id: android.id, body: "x", image_url: imageUrl });
    assert.equal(refused.status, 400, JSON.stringify(refused.body));
    assert.equal(refused.body.error.code, "invalid_message_content");
    assert.deepEqual(Object.keys(refused.body.error.details.fields), ["image_url"]);
    assert.match(refused.body.error.message, /^image_url /);
    assert.equal((await app.deps.db("messages").where("subscription_id", android.id)).length, 0);
    const ios = await createPushSubscription(app, apiKey, { type: "iOSPush" });
    assert.equal((await send({ subscription_id: ios.id, body: "x", image_url: imageUrl })).status, 201);
  });

  test("bad send input answers 4xx and writes nothing", async () => {
    const sub = await createPushSubscription(app, apiKey);
    for (const body of [{ subscription_id: sub.id }, { body: "no recipient" }, { subscription_id: "nope", body: "x" }, { subscription_id: sub.id, body: 5 }, { subscription_id: sub.id, body: "x", surprise: 1 }]) {
      const res = await send(body);
      assert.equal(res.status, 422, JSON.stringify(body));
      assert.equal(res.body.error.code, "validation_error");
    }
    const missing = await send({ subscription_id: "01890000-0000-7000-8000-000000000000", body: "x" });
    assert.equal(missing.status, 404);
    assert.equal((await app.deps.db("messages").where("subscription_id", sub.id)).length, 0);
  });

  test("quota: the API refuses sends once the daily allowance is used, with limit, used and reset_at", async () => {
    const { apiKey: key } = await createApp({ quota: { daily_quota: 2 } });
    const sub = await createPushSubscription(app, key);
    for (let i = 0; i < 2; i++) {
      const id = (await send({ subscription_id: sub.id, body: `n${i}` }, key)).body.data.message_id;
      await waitForStatus(id, "successful", 20_000, key);
    }
    const refused = await send({ subscription_id: sub.id, body: "third" }, key);
    assert.equal(refused.status, 403);
    assert.equal(refused.body.error.code, "quota_exceeded");
    assert.equal(refused.body.error.details.limit, 2);
    assert.equal(refused.body.error.details.used, 2);
    assert.ok(Date.parse(refused.body.error.details.reset_at) > Date.now());
    for (const row of await ledgerInvariant(app.deps.db)) assert.equal(row.sum, 0, `ledger balances of ${row.unit} sum to zero`);
  });

  test("tenants are isolated: another application's message answers 404 everywhere", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const id = (await send({ subscription_id: sub.id, body: "mine" })).body.data.message_id;
    const { apiKey: otherKey } = await createApp();
    for (const [method, path, body] of [
      ["GET", `/messages/${id}`, undefined],
      ["POST", `/messages/${id}/status`, { status: "received" }],
      ["POST", `/messages/${id}/convert`, { action: "opened" }],
      ["POST", `/messages/${id}/cancel`, undefined],
      ["POST", `/messages/${id}/resend`, undefined],
    ] as const) {
      const res = await app.request(method, path, { key: otherKey, body });
      assert.equal(res.status, 404, `${method} ${path}`);
    }
    assert.equal((await send({ subscription_id: sub.id, body: "theirs" }, otherKey)).status, 404);
    const list = await app.request("GET", "/messages", { key: otherKey });
    assert.equal(list.body.data.pagination.total_items, 0);
  });

  test("resend: a failed message is sent again as a new message referencing it", async () => {
    const sub = await createPushSubscription(app, apiKey, { token: simulatorToken("bad") });
    const id = (await send({ subscription_id: sub.id, body: "x" })).body.data.message_id;
    await waitForStatus(id, "failed");
    // The bad token moved the subscription to -10: resending needs a live subscription again.
    await app.deps.db("subscriptions").where("id", sub.id).update({ subscription_status: 1 });
    const resent = await app.request("POST", `/messages/${id}/resend`, { key: apiKey });
    assert.equal(resent.status, 201);
    assert.equal(resent.body.data.resent_from_id, id);
    assert.notEqual(resent.body.data.message_id, id);
    const notFailed = await app.request("POST", `/messages/${resent.body.data.message_id}/resend`, { key: apiKey });
    assert.equal(notFailed.status, 400);
    // Its subscription deleted since (the user was erased): not found, as a send to it answers.
    await app.deps.db("messages").where("id", id).update({ subscription_id: null });
    const gone = await app.request("POST", `/messages/${id}/resend`, { key: apiKey });
    assert.deepEqual([gone.status, gone.body.error.code], [404, "resource_not_found"]);
  });

  test("template sends record the template version used", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const template = await app.request("POST", "/templates", { key: apiKey, body: { name: `order-${Date.now()}`, title_template: "Hi {{user_name}}", body_template: "Order {{order_id}} <shipped>" } });
    assert.equal(template.status, 201, JSON.stringify(template.body));
    const templateId = template.body.data.id ?? template.body.data.template_id;
    const res = await app.request("POST", "/messages/template", { key: apiKey, body: { subscription_id: sub.id, template_id: templateId, variables: { user_name: "홍길동", order_id: "ORD-9" } } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const message = await messageOf(res.body.data.message_id);
    assert.equal(message.title, "Hi 홍길동");
    assert.equal(message.body, "Order ORD-9 <shipped>");
    assert.equal(message.template_id, templateId);
    assert.equal(message.template_version, 1);
  });

  test("a template that reads recipient fields renders each device's own (as campaigns and test sends do); the caller's variables win; a device without a required field refuses the send, naming it, with nothing written", async () => {
    const kim = await createPushSubscription(app, apiKey, { tags: { first_name: "Kim" }, externalId: `u-${crypto.randomUUID()}` });
    const bare = await createPushSubscription(app, apiKey);
    const template = await app.request("POST", "/templates", {
      key: apiKey,
      body: { name: `personal-${crypto.randomUUID()}`, title_template: "{{tags.first_name}}님", body_template: "{{greeting}} {{user.external_id}}", variables: [{ name: "tags.first_name", required: true }] },
    });
    assert.equal(template.status, 201, JSON.stringify(template.body));
    const templateId = template.body.data.template_id;
    const sent = await app.request("POST", "/messages/template", { key: apiKey, body: { subscription_id: kim.id, template_id: templateId, variables: { greeting: "Hello" } } });
    assert.equal(sent.status, 201, JSON.stringify(sent.body));
    const message = await messageOf(sent.body.data.message_id);
    assert.equal(message.title, "Kim님");
    assert.match(message.body, /^Hello u-/, "the user's external_id from the device's user");

    const overridden = await app.request("POST", "/messages/template", { key: apiKey, body: { subscription_id: kim.id, template_id: templateId, variables: { greeting: "Hi", tags: { first_name: "Lee" } } } });
    assert.equal(overridden.status, 201, JSON.stringify(overridden.body));
    assert.equal((await messageOf(overridden.body.data.message_id)).title, "Lee님");

    const before = await app.deps.db("messages").where("subscription_id", bare.id).count<{ count: string }[]>({ count: "*" });
    const refused = await app.request("POST", "/messages/template", { key: apiKey, body: { subscription_id: bare.id, template_id: templateId, variables: { greeting: "Hello" } } });
    assert.deepEqual([refused.status, refused.body.error.code], [400, "missing_required_variable"], JSON.stringify(refused.body));
    assert.equal(refused.body.error.details.subscription_id, bare.id);
    assert.deepEqual(await app.deps.db("messages").where("subscription_id", bare.id).count<{ count: string }[]>({ count: "*" }), before, "nothing written");
  });
});

describe("listing", () => {
  test("GET /messages filters by status, subscription, campaign, error code and created range, pages newest first, and never shows another tenant's", async () => {
    const { id: appId, apiKey: key } = await createApp();
    const other = await createApp();
    const [s1, s2] = [await createPushSubscription(app, key, { type: "iOSPush" }), await createPushSubscription(app, key, { type: "AndroidPush" })];
    const campaign = await insertRunningCampaign(app, appId, "listed", {}, { status: "completed", completed_at: new Date() });
    const otherCampaign = await insertRunningCampaign(app, other.id, "other tenant's", {}, { status: "completed", completed_at: new Date() });
    // Rows written directly (no workflows): the listing is what is under test.
    const row = (subscription: { id: string }, type: string, status: string, day: number, campaignId: string | null = null) => ({
      id: newId(),
      application_id: appId,
      subscription_id: subscription.id,
      subscription_type: type,
      status,
      body: `day ${day}`,
      campaign_id: campaignId,
      campaign_batch: campaignId ? 0 : null,
      sent_at: status === "pending" ? null : new Date(Date.UTC(2026, 0, day, 0, 0, 1)),
      created_at: new Date(Date.UTC(2026, 0, day)),
    });
    const m1 = row(s1, "iOSPush", "pending", 1);
    const m2 = row(s1, "iOSPush", "successful", 2);
    const m3 = { ...row(s1, "iOSPush", "failed", 3, campaign), error_code: "unregistered" };
    const m4 = row(s2, "AndroidPush", "successful", 4, campaign);
    await app.deps.db("messages").insert([m1, m2, m3, m4]);
    const list = async (query: string, apiKey = key) => {
      const res = await app.request("GET", `/messages?${query}`, { key: apiKey });
      assert.equal(res.status, 200, `${query}: ${JSON.stringify(res.body)}`);
      return res.body.data as { messages: Array<{ id: string }>; pagination: { total_items: number; total_pages: number } };
    };
    const ids = async (query: string, apiKey = key) => (await list(query, apiKey)).messages.map((m) => m.id);
    const cases: Array<[query: string, expected: string[]]> = [
      ["", [m4.id, m3.id, m2.id, m1.id]],
      ["status=successful", [m4.id, m2.id]],
      ["status=pending", [m1.id]],
      [`subscription_id=${s1.id}`, [m3.id, m2.id, m1.id]],
      [`campaign_id=${campaign}`, [m4.id, m3.id]],
      ["from=2026-01-02T00:00:00Z&to=2026-01-04T00:00:00Z", [m3.id, m2.id]],
      [`status=successful&subscription_id=${s2.id}`, [m4.id]],
      [`campaign_id=${otherCampaign}`, []],
      ["error_code=unregistered", [m3.id]],
      ["error_code=receipt_timeout", []],
    ];
    for (const [query, expected] of cases) assert.deepEqual(await ids(query), expected, query);
    const page = await list("per_page=1&page=2");
    assert.deepEqual(page.messages.map((m) => m.id), [m3.id]);
    assert.equal(page.pagination.total_items, 4);
    assert.equal(page.pagination.total_pages, 4);
    assert.deepEqual(await ids(`subscription_id=${s1.id}`, other.apiKey), [], "another tenant's key sees none of them");
    for (const query of ["status=sent", "from=2026-01-04T00:00:00Z&to=2026-01-02T00:00:00Z", "from=2026-01-02T00:00:00Z&to=2026-01-02T00:00:00Z"]) {
      const bad = await app.request("GET", `/messages?${query}`, { key });
      assert.equal(bad.status, 422, `${query}: ${JSON.stringify(bad.body)}`);
      assert.equal(bad.body.error.code, "validation_error");
    }
  });

  test("GET /messages?campaign_id= of a recurring campaign lists its runs' messages (they carry the run's id); another tenant's recurring campaign lists none", async () => {
    const { id: appId, apiKey: key } = await createApp();
    const other = await createApp();
    const subscription = await createPushSubscription(app, key, { type: "iOSPush" });
    const recurring = await insertRunningCampaign(app, appId, "recurring", {}, { schedule: JSON.stringify({ cron: "0 9 * * 1", timezone: "Asia/Seoul" }) });
    const runs = [
      await insertRunningCampaign(app, appId, "run 1", {}, { parent_campaign_id: recurring, run_key: "run-1", status: "completed" }),
      await insertRunningCampaign(app, appId, "run 2", {}, { parent_campaign_id: recurring, run_key: "run-2", status: "completed" }),
    ];
    const oneShot = await insertRunningCampaign(app, appId, "one-shot", {}, { status: "completed" });
    const messageOf = (campaignId: string, day: number) => ({
      id: newId(),
      application_id: appId,
      subscription_id: subscription.id,
      subscription_type: "iOSPush",
      status: "successful",
      body: "b",
      campaign_id: campaignId,
      campaign_batch: 0,
      sent_at: new Date(Date.UTC(2026, 1, day, 0, 0, 1)),
      created_at: new Date(Date.UTC(2026, 1, day)),
    });
    const [first, second, unrelated] = [messageOf(runs[0]!, 1), messageOf(runs[1]!, 2), messageOf(oneShot, 3)];
    await app.deps.db("messages").insert([first, second, unrelated]);
    const ids = async (campaignId: string, apiKey = key) => {
      const res = await app.request("GET", `/messages?campaign_id=${campaignId}`, { key: apiKey });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.data.messages.map((m: { id: string }) => m.id);
    };
    assert.deepEqual(await ids(recurring), [second.id, first.id], "the recurring campaign's: both runs'");
    assert.deepEqual(await ids(runs[0]!), [first.id], "a run's own");
    assert.deepEqual(await ids(recurring, other.apiKey), [], "another tenant's key");
  });
});

describe("cancel", () => {
  test("a message cancelled before any worker picked it up is never sent, and its workflow ends cancelled", async () => {
    const idle = await startTestApp({ env: TIMING });
    try {
      const { apiKey: key } = await idle.createApplication({ quota: { daily_quota: 10 } });
      const sub = await createPushSubscription(idle, key);
      const id = (await idle.request("POST", "/messages", { key, body: { subscription_id: sub.id, body: "x" } })).body.data.message_id;
      const cancelled = await idle.request("POST", `/messages/${id}/cancel`, { key });
      assert.equal(cancelled.status, 200);
      assert.equal(cancelled.body.data.status, "cancelled");
      assert.ok(Number.isFinite(Date.parse(cancelled.body.data.cancelled_at)), "cancelled_at is a time");
      const again = await idle.request("POST", `/messages/${id}/cancel`, { key });
      assert.equal(again.status, 200, "cancelling twice is idempotent");
      const worker = await startTestApp({ worker: true, env: { ...TIMING, TEMPORAL_TASK_QUEUE: idle.config.TEMPORAL_TASK_QUEUE } });
      try {
        assert.equal(await idle.deps.temporal.workflow.getHandle(messageWorkflowId(id)).result(), "cancelled");
        assert.equal(worker.simulator!.simulator.totalRequests(), 0);
      } finally {
        await worker.close();
      }
    } finally {
      await idle.close();
    }
  });

  test("a cancel racing an in-flight send waits for it and answers message_already_processed", async () => {
    const sub = await createPushSubscription(app, apiKey, { token: simulatorToken("slow") });
    const id = (await send({ subscription_id: sub.id, body: "x" })).body.data.message_id;
    await eventually(async () => app.simulator!.simulator.requestsFor(sub.token) > 0);
    const cancel = await app.request("POST", `/messages/${id}/cancel`, { key: apiKey });
    assert.equal(cancel.status, 400);
    assert.equal(cancel.body.error.code, "message_already_processed");
    assert.equal(cancel.body.error.details.status, "successful");
    assert.equal((await messageOf(id)).status, "successful");
  });
});
