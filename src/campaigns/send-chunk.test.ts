import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { MockActivityEnvironment } from "@temporalio/testing";
import { startTestApp, type TestApp } from "../../test/support/harness";
import { seedPushSubscriptions } from "../../test/support/fixtures";
import { newId } from "../db/ids";
import { insertRunningCampaign } from "../../test/support/campaigns";
import { createCampaignActivities } from "../../activities/campaigns";
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

test("a provider client that throws mid-chunk: the other provider's answers are committed, its own messages stay pending and the retry sends only those", async () => {
  const { id: applicationId } = await app.createApplication({ rate_limit_tier: "enterprise" });
  const tokens = Array.from({ length: 4 }, (_, i) => `ok-crash-${i}-${newId()}`);
  const group = newId();
  const ids = await seedPushSubscriptions(app, applicationId, 4, { token: (i) => tokens[i]!, tags: () => ({ group }) });
  const campaignId = await insertRunningCampaign(app, applicationId, "client crash", { tags: { group } });
  const range = { campaignId, applicationId, batchNo: 0, after: null, last: [...ids].sort().at(-1)! };
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
