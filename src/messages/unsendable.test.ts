import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { createPushSubscription, simulatorToken } from "../../test/support/fixtures";
import { messageWorkflowId } from "../../workflows/message";

// A 2 s pending timeout, so a send that keeps throwing has to end within seconds.
const TIMING = { AUTOMATA_RECEIPT_TIMEOUT: "1h", AUTOMATA_RETRY_SCALE: "0.0001", AUTOMATA_PENDING_TIMEOUT: "2s" };

let app: TestApp;

before(async () => {
  app = await startTestApp({ worker: true, env: TIMING });
});
after(async () => {
  await app.close();
});

async function sendTo(apiKey: string, subscriptionId: string): Promise<string> {
  const res = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: subscriptionId, title: "Hello" } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  return res.body.data.message_id;
}

async function settledMessage(apiKey: string, id: string) {
  return eventually(async () => {
    const message = (await app.request("GET", `/messages/${id}`, { key: apiKey })).body.data;
    return message.status === "pending" ? undefined : message;
  }, 20_000, 250);
}

test("a device token this worker cannot decrypt fails the message with token_unreadable, at once and refunded", async () => {
  const { apiKey } = await app.createApplication({ rate_limit_tier: "enterprise", quota: { daily_quota: 5 } });
  const sub = await createPushSubscription(app, apiKey, { type: "iOSPush", token: simulatorToken("ok") });
  await app.deps.db("subscriptions").where("id", sub.id).update({ token_ciphertext: "v1:not-a-sealed-token" });
  const id = await sendTo(apiKey, sub.id);
  const message = await settledMessage(apiKey, id);
  assert.equal(message.status, "failed");
  assert.equal(message.error_code, "token_unreadable");
  assert.equal(await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).result(), "failed");
  const transfers = await app.deps.db("ledger_transfers").where("message_id", id);
  assert.ok(transfers.some((t: { reason: string }) => /refund/.test(t.reason)), "the debit is refunded");
  assert.equal(app.simulator!.simulator.requestsFor(sub.token), 0, "nothing reached the provider");
});

test("a device token copied from another application's subscription does not open there: token_unreadable, nothing sent to that device", async () => {
  const a = await app.createApplication({ rate_limit_tier: "enterprise" });
  const b = await app.createApplication({ rate_limit_tier: "enterprise" });
  const subA = await createPushSubscription(app, a.apiKey, { type: "iOSPush", token: simulatorToken("ok") });
  const subB = await createPushSubscription(app, b.apiKey, { type: "iOSPush", token: simulatorToken("ok") });
  // Someone with write access to the database moves B's sealed token into A's row.
  const sealed = (await app.deps.db("subscriptions").where("id", subB.id).first("token_ciphertext")).token_ciphertext as string;
  assert.match(sealed, /^v2:/);
  await app.deps.db("subscriptions").where("id", subA.id).update({ token_ciphertext: sealed });
  const message = await settledMessage(a.apiKey, await sendTo(a.apiKey, subA.id));
  assert.equal(message.status, "failed");
  assert.equal(message.error_code, "token_unreadable");
  assert.equal(app.simulator!.simulator.requestsFor(subB.token), 0, "B's device got nothing through A");
  // B's own send still opens it.
  assert.equal((await settledMessage(b.apiKey, await sendTo(b.apiKey, subB.id))).status, "successful");
});

test("a send that keeps throwing (credentials that will not load) fails with pending_timeout instead of staying pending", async () => {
  const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
  const sub = await createPushSubscription(app, apiKey, { type: "AndroidPush", token: simulatorToken("ok") });
  await app.deps.db("applications").where("id", appId).update({ provider_credentials_ciphertext: "v1:not-sealed-credentials" });
  const id = await sendTo(apiKey, sub.id);
  const message = await settledMessage(apiKey, id);
  assert.equal(message.status, "failed");
  assert.equal(message.error_code, "pending_timeout");
  assert.equal(await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).result(), "failed");
});
