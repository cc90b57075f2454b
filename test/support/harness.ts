import crypto from "node:crypto";
// Every integration test process refuses DNS lookups of Apple and Google (see the preload module).
import "./dns-guard-preload";
import type { DestinationStream } from "pino";
import { loadConfig, type Config } from "../../src/config";
import { createLogger } from "../../src/logger";
import { createDeps, closeDeps, startApiServer, type ApiServer } from "../../src/runtime";
import { startWorker, type RunningWorker } from "../../src/worker/run-worker";
import type { Deps } from "../../src/deps";
import { installTemporalRuntimeLogger } from "../../src/infra/process";
import { startSimulator, type RunningSimulator } from "../../src/infra/simulator";
import { assertEncryptionKeyMatches } from "../../src/crypto/key-check";

/** A response as tests see it. */
export interface ApiResponse<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

/** Options for {@link startTestApp}. */
export interface TestAppOptions {
  /** Also run a Temporal worker (on a task queue of its own, so test files never share work). */
  worker?: boolean;
  /** Extra environment (e.g. AUTOMATA_RECEIPT_TIMEOUT=3s). */
  env?: Record<string, string>;
  /** Route pushes of apps without credentials to a provider simulator started for this app (default: with a worker). */
  simulator?: boolean;
  /** Write this app's logs here (tests that inspect log output) instead of stdout. */
  logDestination?: DestinationStream;
  /** Log level for this app (default: LOG_LEVEL, else warn). */
  logLevel?: string;
  /** Connections in this app's PostgreSQL pool (default 10). */
  poolMax?: number;
  /** PostgreSQL cancels this app's statements after this long (as AUTOMATA_API_STATEMENT_TIMEOUT does for the API); default none. */
  statementTimeoutMs?: number;
}

/** The API (and optionally a worker) running in this test process against the shared real servers. */
export interface TestApp {
  deps: Deps;
  config: Config;
  url: string;
  adminToken: string;
  worker?: RunningWorker;
  /** The provider simulator, when started. */
  simulator?: RunningSimulator;
  /** The run's encryption key, which a separate worker process must use too. */
  encryptionKey: string;
  /** Calls the API; `key` sends X-API-Key, `admin` sends the admin bearer token. */
  request<T = any>(method: string, path: string, options?: { key?: string; admin?: boolean; body?: unknown; rawBody?: string; headers?: Record<string, string> }): Promise<ApiResponse<T>>;
  /** Creates an application through the admin API and returns its id and API key. */
  createApplication(body?: Record<string, unknown>): Promise<{ id: string; apiKey: string }>;
  close(): Promise<void>;
}

/**
 * Starts the real API (and worker) in-process against the PostgreSQL and Temporal that `npm test`
 * started (DATABASE_URL / TEMPORAL_ADDRESS). Each call gets a fresh admin token and its own task queue; all share the run's encryption key,
 * as the processes of one deployment do.
 */
export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  if (!process.env.DATABASE_URL || !process.env.TEMPORAL_ADDRESS) {
    throw new Error("run tests with `npm test` (it starts PostgreSQL and Temporal and sets DATABASE_URL / TEMPORAL_ADDRESS)");
  }
  // Hex, like the admin token `npm start` generates: base64url can start with "-", which the CLI
  // tests' `--token <it>` would read as an option (it made one CI run in 64 fail).
  const adminToken = crypto.randomBytes(24).toString("hex");
  const config = loadConfig({
    ...process.env,
    AUTOMATA_ADMIN_TOKEN: adminToken,
    TEMPORAL_TASK_QUEUE: `test-${crypto.randomUUID()}`,
    AUTOMATA_SEAL_BOUND: "on",
    ...options.env,
  });
  const logger = createLogger(options.logLevel ?? process.env.LOG_LEVEL ?? "warn", "test", options.logDestination);
  // One key per run, like one deployment: the API and workers refuse to start on a key that is not the database's.
  const encryptionKey = process.env.AUTOMATA_ENCRYPTION_KEY;
  if (!encryptionKey) throw new Error("run tests with `npm test` (it sets AUTOMATA_ENCRYPTION_KEY for the run's database)");
  // Installing the SDK runtime without a worker would keep its native handle (and this process) alive.
  // The SDK's metrics exporter binds a port: off unless a test passes AUTOMATA_TEMPORAL_METRICS_ADDRESS (a free port).
  if (options.worker) installTemporalRuntimeLogger(logger, { metricsAddress: options.env?.AUTOMATA_TEMPORAL_METRICS_ADDRESS });
  const simulator = options.simulator ?? options.worker ? await startSimulator(logger) : undefined;
  const deps = await createDeps({
    config,
    logger,
    databaseUrl: process.env.DATABASE_URL,
    temporalAddress: process.env.TEMPORAL_ADDRESS,
    encryptionKey,
    poolMax: options.poolMax ?? 10,
    simulator: simulator?.target,
    statementTimeoutMs: options.statementTimeoutMs,
    // As a worker process does (the API test apps share this deps; their campaign code then uses it).
    campaignPool: options.worker,
  });
  await assertEncryptionKeyMatches(deps.db, deps.secrets, logger);
  const api: ApiServer = await startApiServer(deps, 0, "127.0.0.1");
  const worker = options.worker ? await startWorker(deps, process.env.TEMPORAL_ADDRESS) : undefined;

  const request: TestApp["request"] = async (method, path, opts = {}) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.key) headers["X-API-Key"] = opts.key;
    if (opts.admin) headers.Authorization = `Bearer ${adminToken}`;
    let body: string | undefined = opts.rawBody;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers["Content-Type"] ??= "application/json";
    }
    const response = await fetch(`${api.url}/api/v1${path}`, { method, headers, body });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Non-JSON bodies are returned as text so a test can assert on them.
    }
    return { status: response.status, body: parsed as any, headers: response.headers };
  };

  return {
    deps,
    config,
    url: api.url,
    adminToken,
    worker,
    simulator,
    encryptionKey,
    request,
    async createApplication(body = {}) {
      // Daily and monthly allowances reset at local midnight: an app with a quota and no zone of its
      // own gets one where it is now about noon, so a test's debits cannot straddle a reset.
      const quota = body.quota as Record<string, unknown> | undefined;
      const counted = quota !== undefined && (quota.daily_quota != null || quota.monthly_quota != null);
      const zone = counted && body.timezone === undefined ? { timezone: middayTimeZone() } : {};
      const response = await request("POST", "/admin/applications", { admin: true, body: { name: `test-${crypto.randomUUID()}`, ...zone, ...body } });
      if (response.status !== 201) throw new Error(`createApplication failed: ${response.status} ${JSON.stringify(response.body)}`);
      return { id: response.body.data.application_id, apiKey: response.body.data.api_key };
    },
    async close() {
      await api.close();
      await worker?.shutdown();
      await closeDeps(deps);
      await simulator?.stop();
    },
  };
}

/**
 * A fixed-offset zone (Etc/GMT±N) whose local time at `now` is between 12:00 and 13:00, so local
 * midnight is at least 11 hours away.
 */
export function middayTimeZone(now = new Date()): string {
  const offsetHours = 12 - now.getUTCHours(); // -11 … +12, all of which Etc/GMT names
  // Etc/GMT names count the other way round: Etc/GMT-9 is UTC+9.
  return offsetHours === 0 ? "Etc/GMT" : `Etc/GMT${offsetHours > 0 ? "-" : "+"}${Math.abs(offsetHours)}`;
}

/** Polls `check` until it returns a truthy value or the timeout elapses. */
export async function eventually<T>(check: () => Promise<T | undefined | null | false>, timeoutMs = 15_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`condition not met within ${timeoutMs} ms${last ? `: ${String(last)}` : ""}`);
}
