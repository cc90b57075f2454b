import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { MockActivityEnvironment } from "@temporalio/testing";
import { startTestApp, type TestApp } from "../../test/support/harness";
import { seedPushSubscriptions, type SeedOptions } from "../../test/support/fixtures";
import { newId } from "../db/ids";
import { insertRunningCampaign } from "../../test/support/campaigns";
import { createCampaignActivities, type BatchStart } from "../../activities/campaigns";
import { ledgerInvariant, quotaStatus } from "../quota/quota";
import type { PushDelivery } from "../messages/delivery";
import type { PushProvider } from "../providers";

// The batch activities called directly (no worker: nothing else sends these messages), with a
// provider client that throws for one platform.
let app: TestApp;

before(async () => {
  app = await startTestApp({ simulator: true });
});
after(async () => {
  await app.close();
});

/** The app's push delivery, except that FCM's client throws on every batch. */
function withCrashingFcm(push: PushDelivery): PushDelivery {
  const crashing = Object.create(push) as PushDelivery;
  crashing.providerFor = async (...args: Parameters<PushDelivery["providerFor"]>) => {
    const provider = await push.providerFor(...args);
    if (args[1] !== "AndroidPush") return provider;
    const broken = Object.create(provider) as PushProvider;
    broken.sendBatch = async () => {
      throw new Error("FCM client crashed");
    };
    return broken;
  };
  return crashing;
}

/**
 * An application (optionally with a quota) with `count` seeded subscriptions in a tag group of
 * their own, a running campaign for that group, and the range of its batch 0.
 */
async function campaignBatchFixture(name: string, count: number, options: { seed?: SeedOptions; quota?: Record<string, number> } = {}) {
  const { id: applicationId } = await app.createApplication({ rate_limit_tier: "enterprise", ...(options.quota ? { quota: options.quota } : {}) });
  const group = newId();
  const ids = await seedPushSubscriptions(app, applicationId, count, { ...options.seed, tags: () => ({ group }) });
  const campaignId = await insertRunningCampaign(app, applicationId, name, { tags: { group } });
  return { applicationId, ids, campaignId, range: { campaignId, applicationId, batchNo: 0, after: null, last: [...ids].sort().at(-1)! } };
}

test("a provider client that throws mid-chunk: the other provider's answers are committed, its own messages stay pending and the retry sends only those", async () => {
  const tokens = Array.from({ length: 4 }, (_, i) => `ok-crash-${i}-${newId()}`);
  const { campaignId, range } = await campaignBatchFixture("client crash", 4, { seed: { token: (i) => tokens[i]! } });
  const healthy = createCampaignActivities(app.deps);
  assert.deepEqual(await healthy.createCampaignBatch(range), { messages: 4 });
  assert.deepEqual(await healthy.debitCampaignBatch(range), { proceed: true });

  const crashing = createCampaignActivities({ ...app.deps, push: withCrashingFcm(app.deps.push) });
  await assert.rejects(new MockActivityEnvironment().run(crashing.sendCampaignBatch, range), /FCM client crashed/);
  const byType = async () => {
    const rows = (await app.deps.db("messages").where("campaign_id", campaignId).groupBy("subscription_type", "status").orderBy("subscription_type").select("subscription_type", "status", app.deps.db.raw("count(*)::int as n"))) as Array<{ subscription_type: string; status: string; n: number }>;
    return rows.map((r) => `${r.subscription_type}:${r.status}:${r.n}`);
  };
  assert.deepEqual(await byType(), ["AndroidPush:pending:2", "iOSPush:successful:2"]);

  await new MockActivityEnvironment().run(healthy.sendCampaignBatch, range);
  assert.deepEqual(await byType(), ["AndroidPush:successful:2", "iOSPush:successful:2"]);
  // iOS went out once: the crash did not roll back the answers APNs had given.
  assert.deepEqual(tokens.map((token) => app.simulator!.simulator.requestsFor(token)), [1, 1, 1, 1]);
});

test("a campaign cancelled while a half-sent batch waits for its retry: the retry settles it, refunding the unsent and keeping the sent for their receipts", async () => {
  const { applicationId, campaignId, range } = await campaignBatchFixture("cancelled mid-batch", 4, { quota: { daily_quota: 100 } });
  const healthy = createCampaignActivities(app.deps);
  const crashing = createCampaignActivities({ ...app.deps, push: withCrashingFcm(app.deps.push) });
  // The first attempt creates, debits, sends iOS and dies on FCM; the operator cancels during its retry backoff.
  await assert.rejects(new MockActivityEnvironment().run(crashing.startCampaignBatch, range), /FCM client crashed/);
  assert.equal((await quotaStatus(app.deps.db, applicationId)).daily!.used, 4);
  await app.deps.db("message_campaigns").where("id", campaignId).update({ status: "cancelled", cancelled_at: new Date() });

  const retried = (await new MockActivityEnvironment().run(healthy.startCampaignBatch, range)) as BatchStart;
  assert.equal(retried.messages, 4);
  assert.equal(retried.proceed, false);
  assert.deepEqual(retried.settled, { refunded: 2, sent: 2, failed: 0 });
  const statuses = (await app.deps.db("messages").where("campaign_id", campaignId).orderBy("subscription_type").select("subscription_type", "status")) as Array<{ subscription_type: string; status: string }>;
  assert.deepEqual(statuses.map((m) => `${m.subscription_type}:${m.status}`), ["AndroidPush:cancelled", "AndroidPush:cancelled", "iOSPush:successful", "iOSPush:successful"]);
  assert.equal((await quotaStatus(app.deps.db, applicationId)).daily!.used, 2, "only what went out stays debited");
  for (const row of await ledgerInvariant(app.deps.db)) assert.equal(row.sum, 0, `ledger balances of ${row.unit} sum to zero`);
});

test("a recipient erased after its batch was created is failed as subscription_disabled and refunded, not left pending", async () => {
  const { applicationId, ids, campaignId, range } = await campaignBatchFixture("erased recipient", 2, { quota: { daily_quota: 100 } });
  const activities = createCampaignActivities(app.deps);
  assert.deepEqual(await activities.createCampaignBatch(range), { messages: 2 });
  // User erasure deletes the subscription; its message keeps the row without one (ON DELETE SET NULL).
  await app.deps.db("subscriptions").where("id", ids[0]!).del();

  await new MockActivityEnvironment().run(activities.startCampaignBatch, range);
  const messages = (await app.deps.db("messages").where("campaign_id", campaignId).orderBy("status").select("subscription_id", "status", "error_code")) as Array<{ subscription_id: string | null; status: string; error_code: string | null }>;
  assert.deepEqual(messages, [
    { subscription_id: null, status: "failed", error_code: "subscription_disabled" },
    { subscription_id: ids[1]!, status: "successful", error_code: null },
  ]);
  assert.equal((await quotaStatus(app.deps.db, applicationId)).daily!.used, 1);
});
