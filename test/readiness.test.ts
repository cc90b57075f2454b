import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { loadConfig } from "../src/config";
import { createLogger } from "../src/logger";
import { startEmbeddedPostgres } from "../src/infra/postgres";
import { freePort } from "../src/infra/ports";
import { startTemporalDevServer } from "../temporal/launcher";
import { createDeps, closeDeps, startApiServer } from "../src/runtime";
import { startWorker } from "../src/worker/run-worker";
import { eventually } from "./support/harness";

const logger = createLogger("error", "readiness-test");

async function readiness(url: string): Promise<{ status: number; checks: Record<string, { ok: boolean }> }> {
  const res = await fetch(`${url}/readyz`);
  const body = (await res.json()) as { data?: { checks: Record<string, { ok: boolean }> }; error?: { details: { checks: Record<string, { ok: boolean }> } } };
  return { status: res.status, checks: body.data?.checks ?? body.error!.details.checks };
}

test("/readyz reports PostgreSQL going down and recovers when it comes back", { timeout: 120_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-readyz-pg-"));
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  let postgres = await startEmbeddedPostgres({ dataDir: dir, port, database: "readyz", logger });
  const config = loadConfig({ ...process.env, TEMPORAL_TASK_QUEUE: `readyz-${crypto.randomUUID()}` });
  const deps = await createDeps({ config, logger, databaseUrl: postgres.url, temporalAddress: process.env.TEMPORAL_ADDRESS!, encryptionKey: crypto.randomBytes(32).toString("base64"), poolMax: 2 });
  const worker = await startWorker(deps, process.env.TEMPORAL_ADDRESS!);
  const api = await startApiServer(deps, 0, "127.0.0.1");
  try {
    await eventually(async () => (await readiness(api.url)).status === 200, 20_000, 200);
    await postgres.stop();
    const down = await eventually(async () => {
      const r = await readiness(api.url);
      return r.status === 503 ? r : undefined;
    }, 20_000, 200);
    assert.equal(down.checks.database!.ok, false);
    assert.equal(down.checks.temporal!.ok, true);
    assert.equal((await fetch(`${api.url}/healthz`)).status, 200, "the process itself is still up");
    postgres = await startEmbeddedPostgres({ dataDir: dir, port, database: "readyz", logger });
    await eventually(async () => (await readiness(api.url)).status === 200, 30_000, 250);
  } finally {
    await api.close();
    await worker.shutdown();
    await closeDeps(deps);
    await postgres.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("/readyz reports Temporal going down and recovers when it comes back", { timeout: 180_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-readyz-temporal-"));
  const port = await freePort();
  const start = () => startTemporalDevServer({ port, uiPort: 0, namespace: "default", dbFile: path.join(dir, "temporal.db"), headless: true, logger });
  let temporal = await start();
  const config = loadConfig({ ...process.env, TEMPORAL_TASK_QUEUE: `readyz-${crypto.randomUUID()}` });
  const deps = await createDeps({ config, logger, databaseUrl: process.env.DATABASE_URL!, temporalAddress: temporal.address, encryptionKey: crypto.randomBytes(32).toString("base64"), poolMax: 2 });
  const worker = await startWorker(deps, temporal.address);
  const api = await startApiServer(deps, 0, "127.0.0.1");
  try {
    await eventually(async () => (await readiness(api.url)).status === 200, 30_000, 200);
    await temporal.stop();
    const down = await eventually(async () => {
      const r = await readiness(api.url);
      return r.status === 503 ? r : undefined;
    }, 30_000, 250);
    assert.equal(down.checks.temporal!.ok, false);
    assert.equal(down.checks.database!.ok, true);
    temporal = await start();
    await eventually(async () => (await readiness(api.url)).status === 200, 90_000, 500);
  } finally {
    await api.close();
    await worker.shutdown().catch(() => undefined /* the worker may have given up while Temporal was down */);
    await closeDeps(deps);
    await temporal.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the API comes up while Temporal is unreachable: sends are accepted (the reconciler starts them later) and /readyz says Temporal is down", { timeout: 60_000 }, async () => {
  const config = loadConfig({ ...process.env, TEMPORAL_TASK_QUEUE: `readyz-${crypto.randomUUID()}`, AUTOMATA_ADMIN_TOKEN: crypto.randomBytes(16).toString("hex") });
  const unreachable = `127.0.0.1:${await freePort()}`;
  const deps = await createDeps({ config, logger, databaseUrl: process.env.DATABASE_URL!, temporalAddress: unreachable, encryptionKey: process.env.AUTOMATA_ENCRYPTION_KEY!, poolMax: 2 });
  const api = await startApiServer(deps, 0, "127.0.0.1");
  try {
    const ready = await readiness(api.url);
    assert.equal(ready.status, 503);
    assert.equal(ready.checks.temporal!.ok, false);
    assert.equal(ready.checks.database!.ok, true);
    const admin = { Authorization: `Bearer ${config.AUTOMATA_ADMIN_TOKEN}`, "Content-Type": "application/json" };
    const created = (await (await fetch(`${api.url}/api/v1/admin/applications`, { method: "POST", headers: admin, body: JSON.stringify({ name: "no temporal" }) })).json()) as any;
    const key = { "X-API-Key": created.data.api_key, "Content-Type": "application/json" };
    const token = crypto.randomBytes(32).toString("hex");
    const sub = (await (await fetch(`${api.url}/api/v1/subscriptions`, { method: "POST", headers: key, body: JSON.stringify({ type: "iOSPush", token }) })).json()) as any;
    const sent = await fetch(`${api.url}/api/v1/messages`, { method: "POST", headers: key, body: JSON.stringify({ subscription_id: sub.data.subscription_id, body: "later" }) });
    assert.equal(sent.status, 201, await sent.clone().text());
    const message = (await sent.json()) as any;
    assert.equal((await deps.db("messages").where("id", message.data.message_id).first("status")).status, "pending");
  } finally {
    await api.close();
    await closeDeps(deps);
  }
});
