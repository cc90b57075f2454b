import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { createPushSubscription, seedPushSubscriptions, simulatorToken } from "../../test/support/fixtures";
import { newId } from "../db/ids";
import { quotaStatus } from "../quota/quota";
import { FIRST_ATTEMPT_GRACE_MS, NOW_OR_NEVER, expiredBeforeSend } from "./push-options";
import { startWorker } from "../worker/run-worker";

// Outage retries at 15 min × 0.004 = 3.6 s: a `flaky-` token's first attempt answers 503 and its
// retry comes after a 3-second ttl has run out (the expiry is the acceptance second + 3, so at most
// 3 s after acceptance, and the retry at least 3.6 s after the first attempt; 2–3 s leaves a loaded
// machine time for the first attempt).
const ENV = { AUTOMATA_RECEIPT_TIMEOUT: "1h", AUTOMATA_RETRY_SCALE: "0.004", AUTOMATA_CAMPAIGN_STATUS_POLL: "1s" };

let app: TestApp;

before(async () => {
  app = await startTestApp({ worker: true, env: ENV });
});
after(async () => {
  await app.close();
});

test("expiredBeforeSend: a positive ttl that has run out, for a first attempt only past a grace; now-or-never (new and legacy rows) always goes out", () => {
  const created = new Date("2026-12-01T10:00:00.400Z");
  const s = Math.floor(created.getTime() / 1000);
  const cases: Array<[string, { expiration?: number; ttl_seconds?: number } | null, number, boolean]> = [
    ["no options", null, s + 10_000, false],
    ["no ttl", {}, s + 10_000, false],
    ["ttl 60, before its end", { ttl_seconds: 60, expiration: s + 60 }, (s + 59) * 1000, false],
    ["ttl 60, at its end", { ttl_seconds: 60, expiration: s + 60 }, (s + 60) * 1000, true],
    ["ttl 60, an hour later", { ttl_seconds: 60, expiration: s + 60 }, (s + 3_600) * 1000, true],
    ["ttl 1, run out", { ttl_seconds: 1, expiration: s + 1 }, (s + 2) * 1000, true],
    ["ttl 1 whose expiry base fell a second before created_at", { ttl_seconds: 1, expiration: s }, (s + 2) * 1000, true],
    ["now or never", { ttl_seconds: 0, expiration: NOW_OR_NEVER }, (s + 3_600) * 1000, false],
    ["legacy ttl 60, run out", { expiration: s + 60 }, (s + 3_600) * 1000, true],
    ["legacy ttl 60, before its end", { expiration: s + 60 }, (s + 30) * 1000, false],
    ["legacy now or never (the acceptance second)", { expiration: s }, (s + 3_600) * 1000, false],
    ["legacy now or never, the API's clock a second ahead of the database's", { expiration: s + 1 }, (s + 3_600) * 1000, false],
    ["legacy ttl 2, run out", { expiration: s + 2 }, (s + 3) * 1000, true],
  ];
  for (const [name, options, now, expected] of cases) assert.equal(expiredBeforeSend(options, created, 1, now), expected, `a retry: ${name}`);
  // The first attempt goes out (as now or never) up to the grace past its deadline, no later.
  const ttl60 = { ttl_seconds: 60, expiration: s + 60 };
  const first: Array<[string, { expiration?: number; ttl_seconds?: number }, number, boolean]> = [
    ["ttl 60, at its end", ttl60, (s + 60) * 1000, false],
    ["ttl 60, just inside the grace", ttl60, (s + 60) * 1000 + FIRST_ATTEMPT_GRACE_MS - 1, false],
    ["ttl 60, at the grace's end", ttl60, (s + 60) * 1000 + FIRST_ATTEMPT_GRACE_MS, true],
    ["ttl 60, an hour later", ttl60, (s + 3_600) * 1000, true],
    ["ttl 1, two seconds after acceptance (the way to a worker)", { ttl_seconds: 1, expiration: s + 1 }, (s + 2) * 1000, false],
    ["now or never, an hour later", { ttl_seconds: 0, expiration: NOW_OR_NEVER }, (s + 3_600) * 1000, false],
  ];
  for (const [name, options, now, expected] of first) assert.equal(expiredBeforeSend(options, created, 0, now), expected, `the first attempt: ${name}`);
});

async function send(apiKey: string, subscriptionId: string, options: Record<string, unknown>): Promise<string> {
  const res = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: subscriptionId, title: "Flash sale", ...options } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.data.message_id;
}

async function settled(apiKey: string, id: string) {
  return eventually(async () => {
    const message = (await app.request("GET", `/messages/${id}`, { key: apiKey })).body.data;
    return message.status === "pending" || message.status === "errored" ? undefined : message;
  }, 30_000, 200);
}

test("a message whose ttl runs out while the provider is failing fails with expired and is refunded, instead of reaching the device late", async () => {
  const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise", quota: { daily_quota: 10 } });
  const late = await createPushSubscription(app, apiKey, { type: "iOSPush", token: simulatorToken("flaky") });
  const expired = await settled(apiKey, await send(apiKey, late.id, { ttl_seconds: 3 }));
  assert.equal(expired.status, "failed");
  assert.equal(expired.error_code, "expired");
  const deadline = ((await app.deps.db("messages").where("id", expired.id).first("options")).options as { expiration: number }).expiration * 1000;
  assert.ok(app.simulator!.simulator.requestsFor(late.token) <= 1, "the retry never reached the provider");
  const reached = app.simulator!.simulator.lastPayloadFor(late.token);
  // A first attempt is still made a little after the deadline (a slow start); then APNs is told
  // to deliver it now or never, so it cannot reach the device late either. (Within a second of the
  // deadline the worker's clock may still have read the second before.)
  if (reached && reached.receivedAt >= deadline + 1_000) assert.equal(reached.headers["apns-expiration"], "0", "a first attempt after the deadline is now-or-never");
  // Sent again, it gets its own deadline from now, not the original's passed one, and goes out
  // (the provider answers 200 from the token's second request; should the original's first
  // attempt never have come, the resend's is that 503 and it expires too).
  const firstAttemptCame = app.simulator!.simulator.requestsFor(late.token) === 1;
  const resent = await app.request("POST", `/messages/${expired.id}/resend`, { key: apiKey });
  assert.equal(resent.status, 201, JSON.stringify(resent.body));
  const resentDeadline = ((await app.deps.db("messages").where("id", resent.body.data.message_id).first("options")).options as { expiration: number }).expiration * 1000;
  assert.ok(resentDeadline > deadline, "the resend's deadline counts from its own acceptance");
  const outcome = await settled(apiKey, resent.body.data.message_id);
  assert.deepEqual([outcome.status, outcome.error_code ?? null], firstAttemptCame ? ["successful", null] : ["failed", "expired"]);

  // The same outage without a ttl: the retry delivers it.
  const patient = await createPushSubscription(app, apiKey, { type: "AndroidPush", token: simulatorToken("flaky") });
  assert.equal((await settled(apiKey, await send(apiKey, patient.id, {}))).status, "successful");
  assert.equal(app.simulator!.simulator.requestsFor(patient.token), 2);

  // ttl 0 is "now or never" to the provider (expiration 0), on every attempt we make.
  const now = await createPushSubscription(app, apiKey, { type: "iOSPush", token: simulatorToken("flaky") });
  const nowId = await send(apiKey, now.id, { ttl_seconds: 0 });
  assert.equal((await settled(apiKey, nowId)).status, "successful");
  assert.equal(app.simulator!.simulator.lastPayloadFor(now.token)?.headers["apns-expiration"], "0");
  assert.deepEqual((await app.deps.db("messages").where("id", nowId).first("options")).options, { ttl_seconds: 0, expiration: NOW_OR_NEVER });

  await eventually(async () => (await quotaStatus(app.deps.db, appId)).daily!.used === 3, 10_000, 200);
});

test("campaign messages whose ttl runs out before their batch's retry round fail with expired and are refunded", async () => {
  const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise", quota: { daily_quota: 100 } });
  const group = newId();
  await seedPushSubscriptions(app, appId, 4, { prefix: () => "flaky", tags: () => ({ group }) });
  await seedPushSubscriptions(app, appId, 2, { tags: () => ({ group }) });
  const res = await app.request("POST", "/campaigns", { key: apiKey, body: { name: "flash", title: "Flash sale", body: "1 hour only", ttl_seconds: 2, targeting_criteria: { tags: { group } } } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const id = res.body.data.campaign_id;
  const rows = await eventually(async () => {
    const messages = (await app.deps.db("messages").where("campaign_id", id)) as Array<{ status: string; error_code: string | null }>;
    return messages.length === 6 && messages.every((m) => m.status !== "pending" && m.status !== "errored") ? messages : undefined;
  }, 30_000, 200);
  assert.deepEqual(rows.map((m) => [m.status, m.error_code]).sort(), [
    ["failed", "expired"],
    ["failed", "expired"],
    ["failed", "expired"],
    ["failed", "expired"],
    ["successful", null],
    ["successful", null],
  ]);
  await eventually(async () => (await app.request("GET", `/campaigns/${id}`, { key: apiKey })).body.data.status === "completed", 30_000, 200);
  await eventually(async () => (await quotaStatus(app.deps.db, appId)).daily!.used === 2, 15_000, 200);
});

test("a receipt for an errored message (the provider's answer was lost, the push arrived) is kept, and the retry sends nothing again", async () => {
  const { apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
  const subscription = await createPushSubscription(app, apiKey, { type: "AndroidPush", token: simulatorToken("flaky") });
  const id = await send(apiKey, subscription.id, {});
  // The first attempt's 503: errored, its retry 3.6 s away.
  await eventually(async () => (await app.request("GET", `/messages/${id}`, { key: apiKey })).body.data.status === "errored", 10_000, 50);
  const receipt = await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
  assert.equal(receipt.status, 200, JSON.stringify(receipt.body));
  assert.equal(receipt.body.data.status, "received");
  // Past the retry's time: the workflow found the message received and sent nothing.
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  const message = (await app.request("GET", `/messages/${id}`, { key: apiKey })).body.data;
  assert.equal(message.status, "received");
  assert.ok(message.sent_at && message.received_at, "sent (as the receipt proves) and received");
  assert.deepEqual([message.error_code ?? null, message.error_message ?? null], [null, null], "the lost attempt's 503 is not left on a delivered message");
  assert.equal(app.simulator!.simulator.requestsFor(subscription.token), 1, "the device was not sent the push again");
  const events = (await app.deps.db("message_events").where("message_id", id).orderBy("created_at").orderBy("id").pluck("event_type")) as string[];
  assert.deepEqual(events.slice(-2), ["sent", "received"]);
  // The workflow went on to the conversion wait: a conversion ends it as converted.
  const converted = await app.request("POST", `/messages/${id}/convert`, { key: apiKey, body: {} });
  assert.equal(converted.status, 200, JSON.stringify(converted.body));
  assert.equal(await app.deps.temporal.workflow.getHandle(`message-${id}`).result(), "converted");
});

// Last in this file: it stops the app's worker.
test("a message whose first attempt comes after its ttl ran out (no worker free in time) still goes out, as now or never", async () => {
  const { apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
  const subscription = await createPushSubscription(app, apiKey, { type: "iOSPush", token: simulatorToken("ok") });
  await app.worker!.shutdown();
  const id = await send(apiKey, subscription.id, { ttl_seconds: 1 });
  // Longer than the ttl before any worker picks the message up, as across regions under load.
  await new Promise((resolve) => setTimeout(resolve, 2_500));
  const worker = await startWorker(app.deps, process.env.TEMPORAL_ADDRESS!);
  try {
    const outcome = await settled(apiKey, id);
    assert.deepEqual([outcome.status, outcome.error_code ?? null], ["successful", null]);
    assert.equal(app.simulator!.simulator.lastPayloadFor(subscription.token)?.headers["apns-expiration"], "0", "its deadline had passed: deliver now or never");
  } finally {
    await worker.shutdown();
  }
});
