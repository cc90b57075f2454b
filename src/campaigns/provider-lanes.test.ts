import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { createPushSubscription, seedPushSubscriptions, simulatorToken } from "../../test/support/fixtures";
import { newId } from "../db/ids";

let app: TestApp;

// One FCM connection per pool: a pool serves one request at a time, so whatever shares it queues.
before(async () => {
  app = await startTestApp({ worker: true, env: { AUTOMATA_FCM_CONNECTIONS: "1" } });
});
after(async () => {
  await app.close();
});

test("a single message is not queued behind a campaign's sends: campaigns have their own provider connections", async () => {
  const { id: applicationId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
  // Ten seeded subscriptions alternate iOS and Android; the campaign targets the five Android ones,
  // whose slow- tokens the simulator answers after 2 s each: 10 s on one connection.
  const tokens = Array.from({ length: 10 }, () => simulatorToken("slow"));
  await seedPushSubscriptions(app, applicationId, 10, { token: (i) => tokens[i]!, tags: () => ({ cohort: "slow" }) });
  const campaignTokens = tokens.filter((_, i) => i % 2 === 1);
  const single = await createPushSubscription(app, apiKey, { type: "AndroidPush" });
  const simulator = app.simulator!.simulator;

  const created = await app.request("POST", "/campaigns", {
    key: apiKey,
    body: { name: `c-${newId()}`, title: "Sale", body: "Campaign", targeting_criteria: { tags: { cohort: "slow" }, subscription_types: ["AndroidPush"] } },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const campaignId = created.body.data.campaign_id as string;
  // The campaign's first request is on the wire and the other four wait for the connection.
  await eventually(async () => campaignTokens.some((token) => simulator.requestsFor(token) > 0), 30_000, 50);

  const sent = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: single.id, body: "Your login code is 123456" } });
  assert.equal(sent.status, 201, JSON.stringify(sent.body));
  await eventually(async () => simulator.requestsFor(single.token) > 0, 30_000, 20);
  // On a shared connection it would have been asked only after all five campaign requests.
  const askedBefore = campaignTokens.filter((token) => simulator.requestsFor(token) > 0).length;
  assert.ok(askedBefore < campaignTokens.length, `the single message waited for the campaign: ${askedBefore} of ${campaignTokens.length} campaign requests came first`);
  await eventually(async () => (await app.deps.db("messages").where("id", sent.body.data.message_id).first()).status === "successful", 30_000, 100);

  // The campaign still delivers everything, on its own connection.
  await eventually(async () => (await app.deps.db("messages").where("campaign_id", campaignId).where("status", "successful")).length === campaignTokens.length, 60_000, 200);
});
