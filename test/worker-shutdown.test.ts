/**
 * A deploy stops a worker with SIGTERM, then SIGKILL after the platform's kill timeout. A campaign
 * batch must stop between send chunks once the worker's shutdown grace is over, so the worker exits
 * on its own before the SIGKILL: a chunk rolled back by the kill after the providers accepted its
 * pushes would be sent again by the retried activity.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { spawnWorkerProcess } from "./support/spawn-worker";
import { startTestApp, eventually, type TestApp } from "./support/harness";
import { seedPushSubscriptions, simulatorToken } from "./support/fixtures";
import { newId } from "../src/db/ids";

/** One batch: 250 iOS and 250 Android recipients in five chunks of 100. */
const RECIPIENTS = 500;
/** Time between SIGTERM and SIGKILL here (fly's kill_timeout is longer; what matters is the ordering). */
const KILL_AFTER_MS = 30_000;

let app: TestApp;
const workers = new Set<ChildProcess>();

before(async () => {
  app = await startTestApp({ simulator: true, env: { AUTOMATA_RECEIPT_TIMEOUT: "1h", AUTOMATA_CAMPAIGN_WINDOW: "1" } });
});
after(async () => {
  for (const child of workers) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await app.close();
});

/**
 * A worker process with a 1 s shutdown grace and ten FCM connections: the simulator answers each
 * slow- token after 2 s, so a chunk's 50 Android pushes take 10 s and a batch about 50 s.
 */
function spawnWorker(fcmConnections = 10): Promise<ChildProcess> {
  return spawnWorkerProcess(app, {
    track: workers,
    env: { AUTOMATA_SHUTDOWN_GRACE: "1s", AUTOMATA_FCM_CONNECTIONS: String(fcmConnections), AUTOMATA_CAMPAIGN_WINDOW: "1", AUTOMATA_RECEIPT_TIMEOUT: "1h" },
  });
}

/** Waits for the worker's exit after SIGTERM, sending SIGKILL if it outlives KILL_AFTER_MS. */
async function terminate(worker: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  // Replaces spawnWorker's "exited early" listener: this exit is the one asked for.
  worker.removeAllListeners("exit");
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => worker.once("exit", (code, signal) => resolve({ code, signal })));
  worker.kill("SIGTERM");
  const killer = setTimeout(() => worker.kill("SIGKILL"), KILL_AFTER_MS);
  try {
    return await exited;
  } finally {
    clearTimeout(killer);
  }
}

test("SIGTERM mid-campaign: the batch stops between chunks, the worker exits before SIGKILL, and no push is sent twice", { timeout: 300_000 }, async () => {
  const { id: applicationId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
  const tokens = Array.from({ length: RECIPIENTS }, () => simulatorToken("slow"));
  await seedPushSubscriptions(app, applicationId, RECIPIENTS, { token: (i) => tokens[i]!, tags: () => ({ cohort: "deploy" }) });
  const first = await spawnWorker();
  const created = await app.request("POST", "/campaigns", {
    key: apiKey,
    body: { name: `c-${newId()}`, title: "Deploy", body: "Mid-deploy", targeting_criteria: { tags: { cohort: "deploy" } } },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const campaignId = created.body.data.campaign_id as string;
  const successful = async () => Number((await app.deps.db("messages").where("campaign_id", campaignId).where("status", "successful").count({ n: "*" }))[0]!.n);
  // The first chunk is committed; the batch has four more to send.
  await eventually(async () => (await successful()) > 0, 120_000, 200);

  const exit = await terminate(first);
  assert.deepEqual(exit, { code: 0, signal: null }, "the worker stopped on its own after SIGTERM instead of being killed mid-chunk");
  assert.ok((await successful()) < RECIPIENTS, "the batch was stopped part-way (else this test shows nothing)");

  const second = await spawnWorker();
  await eventually(async () => (await successful()) === RECIPIENTS, 240_000, 500);
  const sentTwice = tokens.filter((token) => app.simulator!.simulator.requestsFor(token) !== 1);
  assert.equal(sentTwice.length, 0, `${sentTwice.length} devices were asked other than once`);
  // Stopped, so the next test's campaign is worked only by the workers it starts.
  await terminate(second);
});

test("SIGTERM while a chunk's pushes queue for connections: the queued ones stay unsent, the chunk commits what went out, and no push is sent twice", { timeout: 300_000 }, async () => {
  // 100 iOS and 100 Android recipients: one chunk holds 50 Android pushes, which two FCM connections
  // take 25 rounds of 2 s to send, far past the 30 s before SIGKILL.
  const recipients = 200;
  const { id: applicationId, apiKey } = await app.createApplication({ rate_limit_tier: "enterprise" });
  const tokens = Array.from({ length: recipients }, () => simulatorToken("slow"));
  const cohort = `queued-${newId()}`;
  await seedPushSubscriptions(app, applicationId, recipients, { token: (i) => tokens[i]!, tags: () => ({ cohort }) });
  const first = await spawnWorker(2);
  const created = await app.request("POST", "/campaigns", {
    key: apiKey,
    body: { name: `c-${newId()}`, title: "Deploy", body: "Queued", targeting_criteria: { tags: { cohort } } },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const campaignId = created.body.data.campaign_id as string;
  const asked = () => tokens.filter((token) => app.simulator!.simulator.requestsFor(token) > 0).length;
  // The first chunk is under way: its first pushes have reached the providers.
  await eventually(async () => asked() > 0, 120_000, 100);

  const exit = await terminate(first);
  assert.deepEqual(exit, { code: 0, signal: null }, "the worker stopped on its own after SIGTERM instead of being killed mid-chunk");
  assert.ok(asked() < recipients, "pushes were left unsent (else this test shows nothing)");

  const second = await spawnWorker();
  const successful = async () => Number((await app.deps.db("messages").where("campaign_id", campaignId).where("status", "successful").count({ n: "*" }))[0]!.n);
  await eventually(async () => (await successful()) === recipients, 240_000, 500);
  const notOnce = tokens.filter((token) => app.simulator!.simulator.requestsFor(token) !== 1);
  assert.equal(notOnce.length, 0, `${notOnce.length} devices were asked other than once`);
  await terminate(second);
});
