import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { seedPushSubscriptions, type SeedOptions } from "../../test/support/fixtures";
import { newId } from "../db/ids";
import { insertRunningCampaign } from "../../test/support/campaigns";
import { createCampaignActivities } from "../../activities/campaigns";
import { campaignBatchWorkflow, campaignBatchWorkflowId } from "../../workflows/campaign-batch";
import { campaignWorkflowId } from "../../workflows/campaign";
import { startWorker } from "../worker/run-worker";
import { ledgerInvariant, quotaStatus } from "../quota/quota";
import type { BatchRange } from "./repository";
import type { Deps } from "../deps";
import type { PushDelivery } from "../messages/delivery";
import type { PushProvider } from "../providers";

// The real batch workflow on the real Temporal server, worked by a worker whose FCM client throws
// and then by a healthy one on the same task queue: Temporal retries the failed activity, as it
// does after any crash. The app itself runs no worker, so only the one started here sends.
let app: TestApp;

before(async () => {
  app = await startTestApp({ simulator: true });
});
after(async () => {
  await app.close();
});

/** Receipts are not awaited here: the batch's receipt wait outlasts the test and is terminated. */
const TIMING = { receiptTimeoutMs: 3_600_000, retryScale: 0.001, pendingTimeoutMs: 3_600_000 };

/** Starts batch 0's workflow (its campaign workflow does not exist; the batch logs that and goes on). */
async function startBatch(range: BatchRange) {
  return app.deps.temporal.workflow.start(campaignBatchWorkflow, {
    taskQueue: app.config.TEMPORAL_TASK_QUEUE,
    workflowId: campaignBatchWorkflowId(range.campaignId, range.batchNo),
    args: [{ ...range, timing: TIMING, parentWorkflowId: campaignWorkflowId(range.campaignId) }],
  });
}

/** Runs a worker with `deps` on the app's task queue. */
function workerWith(deps: Deps) {
  return startWorker(deps, process.env.TEMPORAL_ADDRESS!);
}

/** The campaign's messages as `type:status:count`, sorted. */
async function byType(campaignId: string): Promise<string[]> {
  const rows = (await app.deps.db("messages").where("campaign_id", campaignId).groupBy("subscription_type", "status").orderBy(["subscription_type", "status"]).select("subscription_type", "status", app.deps.db.raw("count(*)::int as n"))) as Array<{ subscription_type: string; status: string; n: number }>;
  return rows.map((r) => `${r.subscription_type}:${r.status}:${r.n}`);
}

/** Waits until the campaign's messages read `expected`. */
async function until(campaignId: string, expected: string[]): Promise<void> {
  await eventually(async () => JSON.stringify(await byType(campaignId)) === JSON.stringify(expected), 60_000, 100).catch(async (error: unknown) => {
    throw new Error(`messages ${JSON.stringify(await byType(campaignId))}, expected ${JSON.stringify(expected)}: ${String(error)}`);
  });
}

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

test("a provider client that throws mid-chunk: the other provider's answers are committed, its own messages stay pending and Temporal's retry sends only those", async () => {
  const tokens = Array.from({ length: 4 }, (_, i) => `ok-crash-${i}-${newId()}`);
  const { campaignId, range } = await campaignBatchFixture("client crash", 4, { seed: { token: (i) => tokens[i]! } });
  const crashing = await workerWith({ ...app.deps, push: withCrashingFcm(app.deps.push) });
  const handle = await startBatch(range);
  try {
    await until(campaignId, ["AndroidPush:pending:2", "iOSPush:successful:2"]);
    await crashing.shutdown();
    const healthy = await workerWith(app.deps);
    try {
      await until(campaignId, ["AndroidPush:successful:2", "iOSPush:successful:2"]);
    } finally {
      await healthy.shutdown();
    }
    // iOS went out once: the crash did not roll back the answers APNs had given, and the retry skipped them.
    assert.deepEqual(tokens.map((token) => app.simulator!.simulator.requestsFor(token)), [1, 1, 1, 1]);
  } finally {
    await crashing.shutdown();
    await handle.terminate("test over");
  }
});

test("a campaign cancelled while a half-sent batch waits for its retry: the retry settles it, refunding the unsent and keeping the sent for their receipts", async () => {
  const { applicationId, campaignId, range } = await campaignBatchFixture("cancelled mid-batch", 4, { quota: { daily_quota: 100 } });
  // The first attempt creates, debits, sends iOS and dies on FCM; the operator cancels during its retry backoff.
  const crashing = await workerWith({ ...app.deps, push: withCrashingFcm(app.deps.push) });
  const handle = await startBatch(range);
  try {
    await until(campaignId, ["AndroidPush:pending:2", "iOSPush:successful:2"]);
    await crashing.shutdown();
    assert.equal((await quotaStatus(app.deps.db, applicationId)).daily!.used, 4);
    await app.deps.db("message_campaigns").where("id", campaignId).update({ status: "cancelled", cancelled_at: new Date() });

    const healthy = await workerWith(app.deps);
    try {
      await until(campaignId, ["AndroidPush:cancelled:2", "iOSPush:successful:2"]);
      await eventually(async () => (await quotaStatus(app.deps.db, applicationId)).daily!.used === 2, 30_000, 100);
    } finally {
      await healthy.shutdown();
    }
    for (const row of await ledgerInvariant(app.deps.db)) assert.equal(row.sum, 0, `ledger balances of ${row.unit} sum to zero`);
  } finally {
    await crashing.shutdown();
    await handle.terminate("test over");
  }
});

test("a recipient erased after its batch was created is failed as subscription_disabled (no provider call counted) and refunded, not left pending", async () => {
  const { applicationId, ids, campaignId, range } = await campaignBatchFixture("erased recipient", 2, { quota: { daily_quota: 100 } });
  // The batch's messages exist (its first attempt created them and died) when user erasure deletes
  // a subscription; its message keeps the row without one (ON DELETE SET NULL).
  assert.deepEqual(await createCampaignActivities(app.deps).createCampaignBatch(range), { messages: 2 });
  await app.deps.db("subscriptions").where("id", ids[0]!).del();

  const worker = await workerWith(app.deps);
  const handle = await startBatch(range);
  try {
    await until(campaignId, ["AndroidPush:successful:1", "iOSPush:failed:1"]);
    const messages = (await app.deps.db("messages").where("campaign_id", campaignId).orderBy("status").select("subscription_id", "status", "error_code", "attempts")) as Array<{ subscription_id: string | null; status: string; error_code: string | null; attempts: number }>;
    // attempts counts provider calls, as for a single message failed before its send.
    assert.deepEqual(messages, [
      { subscription_id: null, status: "failed", error_code: "subscription_disabled", attempts: 0 },
      { subscription_id: ids[1]!, status: "successful", error_code: null, attempts: 1 },
    ]);
    await eventually(async () => (await quotaStatus(app.deps.db, applicationId)).daily!.used === 1, 30_000, 100);
  } finally {
    await worker.shutdown();
    await handle.terminate("test over");
  }
});

test("a chunk chosen as a deadlock victim while recording what the providers answered records it again instead of sending again", async () => {
  // A dead token makes the chunk change its subscription after the providers answer. Another
  // transaction holds that subscription row (FOR NO KEY UPDATE: the batch's inserts, which only
  // key-share it, still go through), so the chunk waits for it while recording, holding the campaign
  // counter row its outcomes just updated: the same shape as two chunks whose counter-row and
  // subscription updates meet in opposite orders.
  const gone = `gone-deadlock-${newId()}`;
  const ok = `ok-deadlock-${newId()}`;
  const { ids, campaignId, range } = await campaignBatchFixture("deadlock while recording", 2, { seed: { token: (i) => [gone, ok][i]! } });
  const goneSubscription = ids[0]!;
  const other = await app.deps.db.transaction();
  const { rows } = (await other.raw("select pg_backend_pid() as pid")) as { rows: Array<{ pid: number }> };
  const otherPid = rows[0]!.pid;
  await other("subscriptions").where("id", goneSubscription).forNoKeyUpdate().select("id");
  const worker = await workerWith(app.deps);
  const handle = await startBatch(range);
  try {
    await eventually(async () => {
      const waiting = (await app.deps.db.raw("select count(*)::int as n from pg_stat_activity where ? = any(pg_blocking_pids(pid)) and query ilike '%subscriptions%for update%'", [otherPid])) as { rows: Array<{ n: number }> };
      return waiting.rows[0]!.n > 0;
    }, 30_000, 20);
    assert.deepEqual([gone, ok].map((token) => app.simulator!.simulator.requestsFor(token)), [1, 1], "the providers have answered");
    // Now this transaction touches every counter row of the campaign, the chunk's included: a cycle,
    // which PostgreSQL breaks by aborting the side that waited first, the chunk's recording.
    const touched = await other
      .raw(
        `INSERT INTO campaign_message_counts (campaign_id, subscription_type, shard)
           SELECT ?, t, s FROM unnest(array['iOSPush', 'AndroidPush']) t, generate_series(0, 15) s
         ON CONFLICT (campaign_id, subscription_type, shard) DO UPDATE SET pending = campaign_message_counts.pending`,
        [campaignId],
      )
      .then(
        () => "went through",
        (error: { code?: string }) => `failed ${String(error.code)}`,
      );
    assert.equal(touched, "went through", "the chunk's recording was the victim and let go of the counter row");
    await other.rollback();
    await until(campaignId, ["AndroidPush:successful:1", "iOSPush:failed:1"]);
    // It recorded again once the subscription row was free, instead of rolling back pushes the
    // providers had accepted, which the retried activity would then have sent again.
    assert.deepEqual([gone, ok].map((token) => app.simulator!.simulator.requestsFor(token)), [1, 1], "each device was asked once");
    const subscription = await app.deps.db("subscriptions").where("id", goneSubscription).first("subscription_status");
    assert.equal(subscription.subscription_status, -10);
  } finally {
    await other.rollback().catch(() => undefined);
    await worker.shutdown();
    await handle.terminate("test over");
  }
});
