/**
 * Campaign reliability on the real servers (PostgreSQL + Temporal + provider simulator): a
 * 5,000-recipient campaign while the worker process is SIGKILLed and restarted twice. Every
 * recipient must end with exactly one message row, every message in a terminal or awaiting-receipt
 * state, one `sent` transition per message, and the quota ledger balanced.
 *
 * What a kill costs: a worker that dies without shutting down is only noticed by Temporal when the
 * running activity's heartbeat timeout (20 seconds for batch activities) expires; the retried
 * activity then resumes with the messages still `pending`. So each kill adds up to ~20 seconds.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import type { ChildProcess } from "node:child_process";
import { spawnWorkerProcess } from "./support/spawn-worker";
import { startTestApp, eventually, type TestApp } from "./support/harness";
import { simulatorToken } from "./support/fixtures";
import { newId } from "../src/db/ids";
import { ledgerBalanceMismatches, ledgerInvariant, quotaStatus } from "../src/quota/quota";
import { campaignWorkflowId } from "../workflows/campaign";
import { campaignCounts } from "../src/campaigns/repository";
import { campaignBatchWorkflowId } from "../workflows/campaign-batch";
import { deviceTokenContext } from "../src/subscriptions/device-token";

const RECIPIENTS = 5_000;
/** Recipients per batch (CAMPAIGN_PAGE_SIZE) and messages per send transaction (SEND_CHUNK). */
const PAGE = 500;
const CHUNK = 100;
const BATCHES = RECIPIENTS / PAGE;
/** Batches sending at once (AUTOMATA_CAMPAIGN_WINDOW, pinned below so the slow tokens cover every batch in flight). */
const WINDOW = 4;
const KILLS = 2;

let app: TestApp;
const workers = new Set<ChildProcess>();

before(async () => {
  // No in-process worker: the workers are separate processes this test can SIGKILL. A long receipt
  // window, so every accepted message stays `successful` (awaiting its receipt) to the end.
  app = await startTestApp({ simulator: true, env: { AUTOMATA_RECEIPT_TIMEOUT: "1h", AUTOMATA_CAMPAIGN_WINDOW: String(WINDOW) } });
});
after(async () => {
  for (const child of workers) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await app.close();
});

function spawnWorker(): Promise<ChildProcess> {
  return spawnWorkerProcess(app, { track: workers });
}

async function killWorker(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}

interface Progress {
  total: number;
  successful: number;
  pending: number;
  campaign: string;
}

test(`a ${RECIPIENTS}-recipient campaign survives ${KILLS} worker SIGKILLs: one message per recipient, all sent once, ledger balanced`, { timeout: 240_000 }, async () => {
  const started = Date.now();
  const { id: appId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise", quota: { daily_quota: 100_000 } });
  const tag = `crash-${crypto.randomUUID()}`;
  // The first worker boots (tsx, Temporal connection) while the audience is seeded.
  const firstWorker = spawnWorker();

  // Seeded straight into PostgreSQL (as bench/campaign.ts does), in id order (UUIDv7), alternating
  // iOS/Android. In the first WINDOW batches (the ones sending at both kills) one `slow` token
  // (2 s answer) per send chunk keeps provider calls in flight, so a kill lands between "the
  // provider accepted it" and "the row was committed"; later batches are all `ok` (fast).
  const recipients = Array.from({ length: RECIPIENTS }, (_, i) => ({
    id: newId(),
    token: simulatorToken(i < WINDOW * PAGE && i % CHUNK === CHUNK / 2 ? "slow" : "ok"),
    type: i % 2 === 0 ? "iOSPush" : "AndroidPush",
  }));
  for (let i = 0; i < RECIPIENTS; i += 1_000) {
    await app.deps.db("subscriptions").insert(
      recipients.slice(i, i + 1_000).map((r) => ({
        id: r.id,
        application_id: appId,
        subscription_type: r.type,
        token_ciphertext: app.deps.secrets.encrypt(r.token, deviceTokenContext(appId)),
        token_hash: app.deps.secrets.hash(r.token),
        subscription_status: 1,
        subscribed_at: new Date(),
        tags: JSON.stringify({ crash: tag }),
      })),
    );
  }
  const tokenOf = new Map(recipients.map((r) => [r.id, r.token]));

  let worker = await firstWorker;
  const created = await app.request("POST", "/campaigns", {
    key: apiKey,
    body: { name: `crash-${newId()}`, title: "Crash", body: "campaign under worker kills", targeting_criteria: { tags: { crash: tag } } },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const campaignId: string = created.body.data.campaign_id;

  const progress = async (): Promise<Progress> => {
    const [row] = (await app.deps.db("messages")
      .where("campaign_id", campaignId)
      .select(app.deps.db.raw("count(*)::int as total, (count(*) filter (where status = 'successful'))::int as successful, (count(*) filter (where status = 'pending'))::int as pending"))) as Array<{
      total: number;
      successful: number;
      pending: number;
    }>;
    const campaign = (await app.deps.db("message_campaigns").where("id", campaignId).first("status")) as { status: string };
    return { ...row!, campaign: campaign.status };
  };

  // Kill while batches are sending: some messages committed, many not, the campaign not finished.
  // Each kill waits for progress made by the current worker (more messages sent than at the last kill).
  const atKill: Array<Progress & { simulatorRequests: number; at: number }> = [];
  let sentBefore = 0;
  for (let kill = 0; kill < KILLS; kill += 1) {
    const target = sentBefore + (kill === 0 ? 2 * CHUNK : 3 * CHUNK);
    const snapshot = await eventually(
      async () => {
        const p = await progress();
        if (p.campaign !== "running" && p.campaign !== "completed") throw new Error(`campaign is ${p.campaign}`);
        return p.successful >= target ? p : undefined;
      },
      120_000,
      50,
    );
    await killWorker(worker);
    const after = await progress();
    atKill.push({ ...after, simulatorRequests: app.simulator!.simulator.totalRequests(), at: Date.now() - started });
    assert.equal(snapshot.campaign, "running", `kill ${kill + 1} landed mid-campaign`);
    assert.ok(after.successful < RECIPIENTS, `kill ${kill + 1} landed before every message was sent (${after.successful})`);
    sentBefore = after.successful;
    worker = await spawnWorker();
  }

  // The last worker finishes the campaign.
  try {
    const budget = 225_000 - (Date.now() - started);
    await eventually(async () => (await progress()).campaign === "completed", budget, 250);
  } catch (error) {
    const statuses = await app.deps.db("messages").where("campaign_id", campaignId).groupBy("status").select("status", app.deps.db.raw("count(*)::int as n"));
    throw new Error(`campaign ${campaignId} (workflow ${campaignWorkflowId(campaignId)}) did not complete: ${String(error)}; messages by status ${JSON.stringify(statuses)}; kills ${JSON.stringify(atKill)}`);
  }
  const completedAt = Date.now() - started;

  // Exactly one message row per recipient.
  const messages = (await app.deps.db("messages")
    .where("campaign_id", campaignId)
    .select("id", "subscription_id", "subscription_type", "status", "error_code", "sent_at", "provider_message_id", "attempts", "campaign_batch")) as Array<{
    id: string;
    subscription_id: string;
    subscription_type: string;
    status: string;
    error_code: string | null;
    sent_at: Date | null;
    provider_message_id: string | null;
    attempts: number;
    campaign_batch: number;
  }>;
  assert.equal(messages.length, RECIPIENTS, "one message row per recipient");
  assert.equal(new Set(messages.map((m) => m.subscription_id)).size, RECIPIENTS, "no recipient has two message rows");
  assert.deepEqual(new Set(messages.map((m) => m.subscription_id)), new Set(recipients.map((r) => r.id)), "every recipient has a message");

  // ok/slow tokens are all accepted; with a 1 h receipt window each message waits for its receipt
  // (`successful`, the awaiting-receipt state). Anything else (pending, errored, failed) is a loss.
  const byStatus: Record<string, number> = {};
  for (const m of messages) {
    const key = m.error_code ? `${m.status}/${m.error_code}` : m.status;
    byStatus[key] = (byStatus[key] ?? 0) + 1;
  }
  assert.deepEqual(byStatus, { successful: RECIPIENTS }, `message statuses of campaign ${campaignId}`);
  for (const m of messages) {
    assert.ok(m.sent_at, `message ${m.id} has sent_at`);
    assert.ok(m.provider_message_id, `message ${m.id} has the provider's message id`);
  }
  const batchesSeen = new Set(messages.map((m) => m.campaign_batch));
  assert.equal(batchesSeen.size, BATCHES, `${BATCHES} batches of ${PAGE}`);

  // Exactly one created and one sent transition per message, however often a send was retried.
  const events = (await app.deps.db("message_events as e")
    .join("messages as m", "m.id", "e.message_id")
    .where("m.campaign_id", campaignId)
    .whereIn("e.event_type", ["created", "sent"])
    .groupBy("e.event_type")
    .select("e.event_type", app.deps.db.raw("count(*)::int as n, count(distinct e.message_id)::int as messages"))) as Array<{ event_type: string; n: number; messages: number }>;
  assert.deepEqual(
    Object.fromEntries(events.map((e) => [e.event_type, [e.n, e.messages]])),
    { created: [RECIPIENTS, RECIPIENTS], sent: [RECIPIENTS, RECIPIENTS] },
    "one created and one sent event per message",
  );

  // The provider side is at-least-once: every recipient's token reached the simulator, and a second
  // request is only possible for a chunk that was in flight (sent, not yet committed) at a kill:
  // at most one chunk per sending batch per kill.
  const simulator = app.simulator!.simulator;
  const requestCounts = messages.map((m) => simulator.requestsFor(tokenOf.get(m.subscription_id)!));
  assert.equal(requestCounts.filter((n) => n === 0).length, 0, "every token reached the provider");
  const duplicated = requestCounts.filter((n) => n > 1).length;
  const maxRequests = Math.max(...requestCounts);
  assert.ok(duplicated <= KILLS * WINDOW * CHUNK, `${duplicated} tokens were sent more than once; at most ${KILLS * WINDOW * CHUNK} can be in flight at ${KILLS} kills`);
  assert.ok(maxRequests <= 1 + KILLS, `a token was sent ${maxRequests} times`);
  // A repeated APNs send carries the message id as collapse id, so the device shows it once.
  for (const m of messages) {
    if (m.subscription_type !== "iOSPush") continue;
    const payload = simulator.lastPayloadFor(tokenOf.get(m.subscription_id)!)!;
    assert.equal(payload.headers["apns-collapse-id"], m.id, `collapse id of ${m.id}`);
  }

  // Campaign row and stats agree with the messages.
  const stats = await app.request("GET", `/campaigns/${campaignId}/stats`, { key: apiKey });
  assert.equal(stats.status, 200, JSON.stringify(stats.body));
  assert.equal(stats.body.data.status, "completed");
  assert.equal(stats.body.data.total_recipients, RECIPIENTS);
  assert.equal(stats.body.data.successful_count, RECIPIENTS);
  assert.equal(stats.body.data.failed_count, 0);
  assert.equal(stats.body.data.remaining, 0);
  // The counts are kept by triggers in the writers' transactions: the killed workers' rolled-back
  // transactions left nothing behind in them.
  const counted = await campaignCounts(app.deps.db, campaignId);
  const statusRows = (await app.deps.db("messages").where("campaign_id", campaignId).groupBy("status").select("status", app.deps.db.raw("count(*)::int as n"))) as Array<{ status: string; n: number }>;
  assert.deepEqual(
    Object.fromEntries(statusRows.map((r) => [r.status, r.n])),
    Object.fromEntries(Object.entries(counted).filter(([status, n]) => status !== "total" && n !== 0)),
    "trigger-kept counts equal the messages",
  );

  // Ledger: every batch debited exactly once for its messages, nothing refunded (everything was
  // accepted), the application's daily usage equals the messages the providers accepted, every
  // unit sums to zero and every balance matches its journal.
  const transfers = (await app.deps.db("ledger_transfers").where("application_id", appId).select("idempotency_key", "reason", "amount")) as Array<{ idempotency_key: string; reason: string; amount: number }>;
  const debits = transfers.filter((t) => t.idempotency_key.startsWith(`debit:daily:batch:${appId}:${campaignId}.b`));
  assert.equal(debits.length, BATCHES, "one daily debit per batch");
  assert.equal(debits.reduce((sum, t) => sum + Number(t.amount), 0), RECIPIENTS, "debited units = messages");
  assert.deepEqual(transfers.filter((t) => t.idempotency_key.startsWith("refund:")), [], "nothing refunded");
  const accepted = messages.filter((m) => m.sent_at).length;
  assert.equal((await quotaStatus(app.deps.db, appId)).daily!.used, accepted, "daily quota used = messages accepted by providers");
  for (const r of await ledgerInvariant(app.deps.db)) assert.equal(r.sum, 0, `ledger balances of ${r.unit} sum to zero`);
  assert.deepEqual(await ledgerBalanceMismatches(app.deps.db, appId), [], "every account balance matches its journal");

  // Temporal: the campaign workflow completed, and every batch that sent messages is still waiting
  // out the receipt window (it expires the messages that get no receipt); a batch that finished
  // without that wait would leave its messages `successful` for ever.
  const client = app.deps.temporal.workflow;
  assert.equal((await client.getHandle(campaignWorkflowId(campaignId)).describe()).status.name, "COMPLETED");
  const batchStatus: Record<string, string> = {};
  for (let batchNo = 0; batchNo < BATCHES; batchNo += 1) {
    batchStatus[campaignBatchWorkflowId(campaignId, batchNo)] = (await client.getHandle(campaignBatchWorkflowId(campaignId, batchNo)).describe()).status.name;
  }
  assert.deepEqual(
    Object.entries(batchStatus).filter(([, status]) => status !== "RUNNING"),
    [],
    `every batch awaits its receipt window (kills: ${JSON.stringify(atKill)})`,
  );

  const attempts: Record<number, number> = {};
  for (const m of messages) attempts[m.attempts] = (attempts[m.attempts] ?? 0) + 1;
  console.log(
    `# campaign ${campaignId}: completed after ${completedAt} ms; kills ${JSON.stringify(atKill)}; simulator requests ${simulator.totalRequests()} for ${RECIPIENTS} messages, ` +
      `${duplicated} tokens sent more than once (max ${maxRequests}); attempts ${JSON.stringify(attempts)}`,
  );
  await killWorker(worker);
});
