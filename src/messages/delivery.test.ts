import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { createPushSubscription, seedPushSubscriptions } from "../../test/support/fixtures";
import { newId } from "../db/ids";
import { PushDelivery } from "./delivery";
import { generateApnsSigningKey } from "../providers/simulator";

// A worker runs up to 100 activities at once on a pool of 20 connections. A send holds its
// transaction (one connection) while it calls the provider, so anything it reads on the way (the
// application's credentials, re-read every 30 s) must use that connection: taking a second one
// from the pool deadlocks once every connection is held by a send waiting for the same read.
// One connection in the pool makes that deadlock certain, so these sends finish only if no step
// of a send asks the pool for a second connection.

let app: TestApp;

before(async () => {
  app = await startTestApp({ worker: true, poolMax: 1, env: { AUTOMATA_RETRY_SCALE: "0.001" } });
});
after(async () => {
  await app.close();
});

test("single messages are sent by a worker whose pool has a single connection", async () => {
  const { apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
  const messageIds: string[] = [];
  for (const type of ["iOSPush", "AndroidPush", "iOSPush"] as const) {
    const subscription = await createPushSubscription(app, apiKey, { type });
    const sent = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: subscription.id, title: "one connection" } });
    assert.equal(sent.status, 201, JSON.stringify(sent.body));
    messageIds.push(sent.body.data.message_id);
  }
  await eventually(async () => {
    const rows = (await app.deps.db("messages").whereIn("id", messageIds).select("status")) as Array<{ status: string }>;
    return rows.length === messageIds.length && rows.every((row) => row.status === "successful");
  }, 45_000, 250);
});

test("a campaign is sent by a worker whose pool has a single connection", async () => {
  const { id: applicationId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
  await seedPushSubscriptions(app, applicationId, 6, { tags: () => ({ cohort: "one-connection" }) });
  const created = await app.request("POST", "/campaigns", {
    key: apiKey,
    body: { name: `c-${newId()}`, title: "Hello", body: "one connection", targeting_criteria: { tags: { cohort: "one-connection" } } },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const campaignId: string = created.body.data.campaign_id;
  await eventually(async () => (await app.deps.db("message_campaigns").where("id", campaignId).first()).status === "completed", 60_000, 250);
  const statuses = (await app.deps.db("messages").where("campaign_id", campaignId).select("status")) as Array<{ status: string }>;
  assert.equal(statuses.length, 6);
  assert.ok(statuses.every((row) => row.status === "successful"), JSON.stringify(statuses));
});

test("decrypted credentials of an application that stopped sending are dropped from the worker's memory once they expire", async (t) => {
  const [a, b] = [await app.createApplication({ rate_limit_tier: "enterprise" }), await app.createApplication({ rate_limit_tier: "enterprise" })];
  const delivery = new PushDelivery(app.deps.db, app.deps.secrets, app.deps.logger, app.simulator!.target);
  try {
    await delivery.providerFor(a.id, "iOSPush", false, app.deps.db);
    assert.equal(delivery.cachedCredentialCount, 1);
    // 31 s later (past the 30 s cache), only another application sends.
    const now = Date.now();
    t.mock.method(Date, "now", () => now + 31_000);
    await delivery.providerFor(b.id, "iOSPush", false, app.deps.db);
    assert.equal(delivery.cachedCredentialCount, 1, "application A's entry is gone");
  } finally {
    await delivery.close();
  }
});

test("credentials changed since a worker read them are read again at the next campaign chunk (fixed, then resumed at once), not up to 30 s later", async () => {
  const { id } = await app.createApplication({ rate_limit_tier: "enterprise" });
  const delivery = new PushDelivery(app.deps.db, app.deps.secrets, app.deps.logger, app.simulator!.target);
  try {
    const before = await delivery.providerFor(id, "iOSPush", false, app.deps.db, "bulk");
    await delivery.forgetChangedCredentials(id, app.deps.db);
    assert.equal(delivery.cachedCredentialCount, 1, "unchanged credentials stay cached");
    // The operator stores the application's own APNs credentials.
    const stored = await app.request("PATCH", `/admin/applications/${id}`, {
      admin: true,
      body: { provider_credentials: { apns: { team_id: "TEAM123456", key_id: "KEY1234567", signing_key: generateApnsSigningKey().privateKeyPem, bundle_id: "com.example.app" } } },
    });
    assert.equal(stored.status, 200, JSON.stringify(stored.body));
    await delivery.forgetChangedCredentials(id, app.deps.db);
    assert.equal(delivery.cachedCredentialCount, 0, "the copy read before the change is dropped");
    const after = await delivery.providerFor(id, "iOSPush", false, app.deps.db, "bulk");
    assert.notEqual(after, before, "the next send uses the stored credentials, not the simulator's");
  } finally {
    await delivery.close();
  }
});
