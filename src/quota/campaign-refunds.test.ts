import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { seedPushSubscriptions } from "../../test/support/fixtures";
import { newId } from "../db/ids";
import { campaignBatchWorkflowId } from "../../workflows/campaign-batch";
import { insertRunningCampaign, startTestCampaignWorkflow } from "../../test/support/campaigns";
import { ledgerBalanceMismatches, quotaStatus } from "./quota";
import { createCampaignActivities } from "../../activities/campaigns";
import { transitionMessagesWhere } from "../campaigns/bulk";

// Real retry timings: an outage retry waits 15 minutes, long enough to terminate the batch in it.
let app: TestApp;

before(async () => {
  app = await startTestApp({ worker: true });
});
after(async () => {
  await app.close();
});

test("a terminated campaign batch refunds every unsent message, also those an earlier round had failed", async () => {
  const { id: appId } = await app.createApplication({ rate_limit_tier: "enterprise", quota: { daily_quota: 100, unit_price: 2, credit_balance: 1000 } });
  const group = newId();
  // Ids grow with time. Batch 0 (a page of 10): five tokens the provider refuses for good (failed,
  // never sent) and five whose provider is down (errored, waiting for a 15-minute retry when the
  // batch is terminated). Batch 1: five that are sent.
  await seedPushSubscriptions(app, appId, 5, { prefix: () => "bad", tags: () => ({ group }) });
  await seedPushSubscriptions(app, appId, 5, { prefix: () => "down", tags: () => ({ group }) });
  await seedPushSubscriptions(app, appId, 5, { tags: () => ({ group }) });
  const id = await insertRunningCampaign(app, appId, "terminated batch", { tags: { group } });
  // One batch at a time and a new run after every batch, so batch 0 belongs to an earlier run and
  // the campaign finds it closed by polling (the path that fails and refunds its messages).
  const handle = await startTestCampaignWorkflow(app, { campaignId: id, applicationId: appId }, { timing: { receiptTimeoutMs: 3_000, retryScale: 1, pendingTimeoutMs: 3_600_000 }, pageSize: 10, window: 1, batchesPerRun: 1, statusPollMs: 1_000 });
  const messages = async () => (await app.deps.db("messages").where("campaign_id", id).orderBy("subscription_id").select("status", "error_code", "sent_at")) as Array<{ status: string; error_code: string | null; sent_at: Date | null }>;
  await eventually(async () => {
    const rows = await messages();
    return rows.length === 10 && rows.slice(0, 5).every((m) => m.status === "failed") && rows.slice(5).every((m) => m.status === "errored");
  }, 20_000, 50);
  assert.equal((await quotaStatus(app.deps.db, appId)).daily!.used, 10, "batch 0 was debited");

  await app.deps.temporal.workflow.getHandle(campaignBatchWorkflowId(id, 0)).terminate("operator stopped it");
  await handle.result();
  const rows = await messages();
  assert.deepEqual(
    rows.map((m) => [m.status, m.error_code, m.sent_at !== null]),
    [
      ...Array.from({ length: 5 }, () => ["failed", "invalid_token", false]),
      ...Array.from({ length: 5 }, () => ["failed", "batch_aborted", false]),
      ...Array.from({ length: 5 }, () => ["successful", null, true]),
    ],
  );
  // Only batch 1's five reached a device: batch 0's ten are all refunded and uncharged, the five
  // its send round had failed as well as the five the abort failed.
  await eventually(async () => (await quotaStatus(app.deps.db, appId)).daily!.used <= 5, 15_000, 200).catch(() => undefined);
  const status = await quotaStatus(app.deps.db, appId);
  assert.equal(status.daily!.used, 5);
  assert.equal(status.credit!.balance, 1000 - 5 * 2);
  assert.deepEqual(await ledgerBalanceMismatches(app.deps.db, appId), []);
});

test("a batch create retried after its debit keeps its recipients: one that re-subscribed meanwhile gets nothing unpaid, and the abort refund balances", async () => {
  const { id: appId } = await app.createApplication({ rate_limit_tier: "enterprise", quota: { daily_quota: 100, unit_price: 2, credit_balance: 1000 } });
  const group = newId();
  const ids = await seedPushSubscriptions(app, appId, 4, { tags: () => ({ group }) });
  // Unsubscribed when the batch first runs, back (same id, inside the batch's range) before its retry.
  await app.deps.db("subscriptions").where("id", ids[1]).update({ subscription_status: -2 });
  const id = await insertRunningCampaign(app, appId, "retried batch", { tags: { group } });
  const activities = createCampaignActivities(app.deps);
  const range = { campaignId: id, applicationId: appId, batchNo: 0, after: null, last: ids[3]! };

  assert.deepEqual(await activities.createCampaignBatch(range), { messages: 3 });
  assert.deepEqual(await activities.debitCampaignBatch(range), { proceed: true });
  await app.deps.db("subscriptions").where("id", ids[1]).update({ subscription_status: 1 });
  // The retry of an attempt that committed its create and debit (the worker died before it reported).
  assert.deepEqual(await activities.createCampaignBatch(range), { messages: 3 });
  assert.deepEqual(await activities.debitCampaignBatch(range), { proceed: true });
  const recipients = (await app.deps.db("messages").where("campaign_id", id).orderBy("subscription_id").pluck("subscription_id")) as string[];
  assert.deepEqual(recipients, [ids[0], ids[2], ids[3]]);
  assert.equal((await quotaStatus(app.deps.db, appId)).daily!.used, 3);

  // Its workflow never existed: the campaign's abort fails the three and refunds exactly them.
  assert.deepEqual(await activities.closedCampaignBatches({ campaignId: id, applicationId: appId, batchNos: [0] }), [0]);
  const statuses = (await app.deps.db("messages").where("campaign_id", id).pluck("error_code")) as string[];
  assert.deepEqual(statuses, ["batch_aborted", "batch_aborted", "batch_aborted"]);
  const status = await quotaStatus(app.deps.db, appId);
  assert.equal(status.daily!.used, 0);
  assert.equal(status.credit!.balance, 1000);
  assert.deepEqual(await ledgerBalanceMismatches(app.deps.db, appId), []);
});

/** A charged application (daily 100, 2 per message, 1,000 credit), a running campaign to three devices, and its batch 0's range. */
async function campaignOfThree(name: string) {
  const { id: appId } = await app.createApplication({ rate_limit_tier: "enterprise", quota: { daily_quota: 100, unit_price: 2, credit_balance: 1000 } });
  const group = newId();
  const ids = await seedPushSubscriptions(app, appId, 3, { tags: () => ({ group }) });
  const id = await insertRunningCampaign(app, appId, name, { tags: { group } });
  return { appId, id, activities: createCampaignActivities(app.deps), range: { campaignId: id, applicationId: appId, batchNo: 0, after: null, last: ids[2]! } };
}

test("a campaign cancel retried after its first attempt committed still aborts and refunds the batches that will never settle", async () => {
  // Batch 0's messages exist and are paid for; its workflow does not exist (closed without settling).
  const { appId, id, activities, range } = await campaignOfThree("cancel retried");
  assert.deepEqual(await activities.createCampaignBatch(range), { messages: 3 });
  assert.deepEqual(await activities.debitCampaignBatch(range), { proceed: true });
  assert.equal((await quotaStatus(app.deps.db, appId)).daily!.used, 3);
  // The first attempt of the cancel committed its cancel, then failed before aborting the batch.
  await app.deps.db.transaction((trx) => transitionMessagesWhere(trx, "cancel", (q) => q.where("campaign_id", id).where("application_id", appId), {}, { source: "campaign_cancel" }));
  // Temporal's retry of the activity: nothing is left to cancel, but the batch's refund is still owed.
  assert.equal(await activities.cancelCampaignMessages(id), 0);
  const status = await quotaStatus(app.deps.db, appId);
  assert.equal(status.daily!.used, 0);
  assert.equal(status.credit!.balance, 1000);
  assert.deepEqual(await ledgerBalanceMismatches(app.deps.db, appId), []);
});

test("two attempts of one batch create at once (a heartbeat timeout's retry while the first still runs) create the batch once", async () => {
  const { id: appId } = await app.createApplication({ rate_limit_tier: "enterprise", quota: { daily_quota: 100 } });
  const group = newId();
  const ids = await seedPushSubscriptions(app, appId, 4, { tags: () => ({ group }) });
  await app.deps.db("subscriptions").where("id", ids[1]).update({ subscription_status: -2 });
  const id = await insertRunningCampaign(app, appId, "twin attempts", { tags: { group } });
  const activities = createCampaignActivities(app.deps);
  const range = { campaignId: id, applicationId: appId, batchNo: 0, after: null, last: ids[3]! };
  // An uncommitted message for the first recipient holds the first attempt at its insert.
  const blocker = await app.deps.db.transaction();
  const holder = Number((await blocker.raw("select pg_backend_pid() as pid")).rows[0].pid);
  const waitingBehindHolder = async () => {
    const rows = (await app.deps.db.raw("select pid, pg_blocking_pids(pid) as blockers from pg_stat_activity where wait_event_type = 'Lock'")).rows as Array<{ pid: number; blockers: number[] }>;
    const behind = new Set([holder]);
    for (let grew = true; grew; ) {
      grew = false;
      for (const row of rows) if (!behind.has(row.pid) && row.blockers.some((pid) => behind.has(pid))) (behind.add(row.pid), (grew = true));
    }
    return behind.size - 1;
  };
  let first: Promise<{ messages: number }> | undefined;
  let second: Promise<{ messages: number }> | undefined;
  try {
    await blocker("messages").insert({ id: newId(), application_id: appId, subscription_id: ids[0], subscription_type: "iOSPush", status: "pending", campaign_id: id, campaign_batch: 0 });
    first = activities.createCampaignBatch(range);
    await eventually(async () => (await waitingBehindHolder()) >= 1 || undefined, 10_000, 10);
    // Joins the batch's range after the first attempt read its recipients, before the second reads.
    await app.deps.db("subscriptions").where("id", ids[1]).update({ subscription_status: 1 });
    second = activities.createCampaignBatch(range);
    await eventually(async () => (await waitingBehindHolder()) >= 2 || undefined, 10_000, 10);
  } finally {
    await blocker.rollback();
  }
  assert.deepEqual(await Promise.all([first!, second!]), [{ messages: 3 }, { messages: 3 }]);
  const recipients = (await app.deps.db("messages").where("campaign_id", id).orderBy("subscription_id").pluck("subscription_id")) as string[];
  assert.deepEqual(recipients, [ids[0], ids[2], ids[3]], "the batch holds what its one debit will pay for");
});

test("a batch aborted while an attempt of its create and debit still runs (its workflow terminated under it) leaves no message pending and nothing debited", async () => {
  const { appId, id, activities, range } = await campaignOfThree("aborted under its create");
  // A twin attempt holds the batch's create lock, so this attempt's create waits for it.
  const twin = await app.deps.db.transaction();
  const twinPid = Number((await twin.raw("select pg_backend_pid() as pid")).rows[0].pid);
  const waitingOnTwin = async () =>
    ((await app.deps.db.raw("select count(*)::int as n from pg_stat_activity where ? = any(pg_blocking_pids(pid))", [twinPid])).rows[0] as { n: number }).n;
  let create: Promise<{ messages: number }> | undefined;
  let abort: Promise<number[]> | undefined;
  try {
    await twin.raw("select pg_advisory_xact_lock(hashtextextended(?, 0))", [`campaign-batch:${id}:0`]);
    create = activities.createCampaignBatch(range);
    await eventually(async () => (await waitingOnTwin()) >= 1 || undefined, 10_000, 10);
    // The workflow is gone (it never existed here): the campaign aborts the batch meanwhile.
    abort = activities.closedCampaignBatches({ campaignId: id, applicationId: appId, batchNos: [0] });
    await eventually(async () => (await waitingOnTwin()) >= 2 || undefined, 10_000, 10);
  } finally {
    await twin.rollback();
  }
  assert.deepEqual(await create!, { messages: 3 });
  assert.deepEqual(await abort!, [0]);
  const messages = async () => (await app.deps.db("messages").where("campaign_id", id).orderBy("subscription_id").pluck("error_code")) as Array<string | null>;
  assert.deepEqual(await messages(), ["batch_aborted", "batch_aborted", "batch_aborted"], "the abort waited for the create and failed what it made");
  // The attempt goes on to its debit (nothing tells it the workflow is gone until it heartbeats).
  await activities.debitCampaignBatch(range);
  const status = await quotaStatus(app.deps.db, appId);
  assert.equal(status.daily!.used, 0);
  assert.equal(status.credit!.balance, 1000);
  assert.deepEqual(await ledgerBalanceMismatches(app.deps.db, appId), []);
});

test("a batch retried after a quota was set fails only its unsent messages as quota_exceeded; what an earlier attempt delivered stays delivered", async () => {
  // Unlimited when the first attempt debits: no ledger entry is written for the batch.
  const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
  const group = newId();
  const ids = await seedPushSubscriptions(app, appId, 3, { tags: () => ({ group }) });
  const id = await insertRunningCampaign(app, appId, "quota set mid-batch", { tags: { group } });
  const activities = createCampaignActivities(app.deps);
  const range = { campaignId: id, applicationId: appId, batchNo: 0, after: null, last: ids[2]! };
  assert.deepEqual(await activities.createCampaignBatch(range), { messages: 3 });
  assert.deepEqual(await activities.debitCampaignBatch(range), { proceed: true });
  // The attempt's first chunk went out (one message accepted by the provider), then it stopped.
  const delivered = (await app.deps.db("messages").where("campaign_id", id).orderBy("id").first("id")) as { id: string };
  await app.deps.db("messages").where("id", delivered.id).update({ status: "successful", sent_at: new Date(), attempts: 1 });
  // An operator sets a daily quota smaller than the batch; the retry's debit finds it exhausted.
  const quota = await app.request("PATCH", `/admin/applications/${appId}`, { admin: true, body: { quota: { daily_quota: 2 } } });
  assert.equal(quota.status, 200, JSON.stringify(quota.body));
  assert.deepEqual(await activities.debitCampaignBatch(range), { proceed: false });
  const rows = (await app.deps.db("messages").where("campaign_id", id).select("id", "status", "error_code")) as Array<{ id: string; status: string; error_code: string | null }>;
  assert.deepEqual(rows.find((m) => m.id === delivered.id), { id: delivered.id, status: "successful", error_code: null });
  assert.deepEqual(rows.filter((m) => m.id !== delivered.id).map((m) => [m.status, m.error_code]), [["failed", "quota_exceeded"], ["failed", "quota_exceeded"]]);
  // The device that got it can still report it.
  const receipt = await app.request("POST", `/messages/${delivered.id}/status`, { key: apiKey, body: { status: "received" } });
  assert.deepEqual([receipt.status, receipt.body.data?.status], [200, "received"], JSON.stringify(receipt.body));
});
