import crypto from "node:crypto";
import type { Logger } from "pino";
import { loadConfig } from "../../src/config";
import { startSimulator, type RunningSimulator } from "../../src/infra/simulator";
import { createDeps, closeDeps, startApiServer, type ApiServer } from "../../src/runtime";
import { startWorker, type RunningWorker } from "../../src/worker/run-worker";
import { assertEncryptionKeyMatches } from "../../src/crypto/key-check";
import type { Deps } from "../../src/deps";

/** The API, a worker and the simulator, started in this process against a given PostgreSQL and Temporal. */
export interface Platform {
  deps: Deps;
  api: ApiServer;
  worker: RunningWorker;
  simulator: RunningSimulator;
  adminToken: string;
  call(method: string, route: string, options?: { key?: string; admin?: boolean; body?: unknown; headers?: Record<string, string> }): Promise<{ status: number; body: any }>;
  stop(): Promise<void>;
}

/**
 * Starts the real API, worker and simulator against `databaseUrl` and `temporalAddress`, on a task
 * queue of their own, for tests that bring their own PostgreSQL or Temporal server.
 */
export async function startPlatform(logger: Logger, databaseUrl: string, temporalAddress: string, env: Record<string, string> = {}): Promise<Platform> {
  const adminToken = crypto.randomBytes(24).toString("hex");
  const config = loadConfig({
    ...process.env,
    AUTOMATA_ADMIN_TOKEN: adminToken,
    TEMPORAL_TASK_QUEUE: `restarts-${crypto.randomUUID()}`,
    AUTOMATA_RECEIPT_TIMEOUT: "1h",
    // Temporary failures (a database that went away mid-send) retry within seconds, not minutes.
    AUTOMATA_RETRY_SCALE: "0.001",
    // A campaign chunk's slow Android sends all in flight at once, as they are against Google.
    AUTOMATA_FCM_CONNECTIONS: "100",
    ...env,
  });
  const simulator = await startSimulator(logger);
  const encryptionKey = process.env.AUTOMATA_ENCRYPTION_KEY!;
  // API and worker with pools of their own, as the separate processes of a deployment have.
  const deps = await createDeps({ config, logger, databaseUrl, temporalAddress, encryptionKey, poolMax: 4, simulator: simulator.target });
  const apiDeps = await createDeps({ config, logger, databaseUrl, temporalAddress, encryptionKey, poolMax: 4 });
  await assertEncryptionKeyMatches(deps.db, deps.secrets, logger);
  const worker = await startWorker(deps, temporalAddress);
  const api = await startApiServer(apiDeps, 0, "127.0.0.1");
  const platform: Platform = {
    deps,
    api,
    worker,
    simulator,
    adminToken,
    async call(method, route, options = {}) {
      const headers: Record<string, string> = { "Content-Type": "application/json", ...options.headers };
      if (options.key) headers["X-API-Key"] = options.key;
      if (options.admin) headers.Authorization = `Bearer ${adminToken}`;
      const res = await fetch(`${api.url}/api/v1${route}`, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    async stop() {
      await api.close();
      await closeDeps(apiDeps);
      await platform.worker.shutdown().catch(() => undefined /* it may have stopped while its server was down */);
      await closeDeps(deps);
      await simulator.stop();
    },
  };
  return platform;
}
