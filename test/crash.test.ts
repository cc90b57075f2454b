import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { spawnWorkerProcess } from "./support/spawn-worker";
import { startTestApp, eventually, type TestApp } from "./support/harness";
import { createPushSubscription, simulatorToken } from "./support/fixtures";

let app: TestApp;
/** Every worker process started here, so a failing test cannot leave one running (it would hold the run open). */
const workers = new Set<ChildProcess>();

before(async () => {
  // No in-process worker: the workers are separate processes this test can SIGKILL.
  app = await startTestApp({ simulator: true, env: { AUTOMATA_RECEIPT_TIMEOUT: "1h" } });
});
after(async () => {
  for (const child of workers) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await app.close();
});

function spawnWorker(): Promise<ChildProcess> {
  return spawnWorkerProcess(app, { track: workers });
}

test("a worker killed (SIGKILL) mid-send loses nothing: every message ends successful exactly once", { timeout: 240_000 }, async () => {
  const { apiKey } = await app.createApplication({ quota: { daily_quota: 1000 } });
  // Slow tokens keep sends in flight (2 s each) when the worker dies.
  const subscriptions = await Promise.all(
    Array.from({ length: 24 }, (_, i) => createPushSubscription(app, apiKey, { type: i % 2 ? "iOSPush" : "AndroidPush", token: simulatorToken(i % 3 === 0 ? "ok" : "slow") })),
  );
  const first = await spawnWorker();
  const ids: string[] = [];
  for (const sub of subscriptions) {
    const res = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: sub.id, body: "crash test" } });
    assert.equal(res.status, 201);
    ids.push(res.body.data.message_id);
  }
  await eventually(async () => app.simulator!.simulator.totalRequests() >= 4, 30_000, 20);
  first.kill("SIGKILL");
  await new Promise((resolve) => first.once("exit", resolve));
  const unsentAtKill = await app.deps.db("messages").whereIn("id", ids).whereNot("status", "successful").count<{ count: string }[]>({ count: "*" });
  assert.ok(Number(unsentAtKill[0]!.count) > 0, "the kill came while sends were still in flight");

  const second = await spawnWorker();
  try {
    await eventually(
      async () => {
        const open = await app.deps.db("messages").whereIn("id", ids).whereNot("status", "successful").count<{ count: number }[]>({ count: "*" });
        return Number(open[0]!.count) === 0;
      },
      180_000,
      500,
    );
  } finally {
    second.kill("SIGTERM");
    await new Promise((resolve) => second.once("exit", resolve));
  }

  const sentEvents = await app.deps.db("message_events").whereIn("message_id", ids).where("event_type", "sent").select("message_id");
  assert.equal(sentEvents.length, ids.length, "exactly one 'sent' transition per message");
  assert.equal(new Set(sentEvents.map((e: { message_id: string }) => e.message_id)).size, ids.length);
  const debits = await app.deps.db("ledger_transfers").whereIn("message_id", ids).where("reason", "like", "%debit%");
  assert.equal(new Set(debits.map((d: { message_id: string }) => d.message_id)).size, ids.length, "every message debited");
  assert.equal(debits.length, ids.length, "and debited once");
  // A send that was in flight when the worker died is sent again; the APNs collapse id (the
  // message id) makes the device replace the first copy instead of showing two.
  for (const [i, sub] of subscriptions.entries()) {
    const payload = app.simulator!.simulator.lastPayloadFor(sub.token)!;
    if (payload.provider === "apns") assert.equal(payload.headers["apns-collapse-id"], ids[i]);
  }
});
