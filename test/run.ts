/**
 * `npm test`: starts one real PostgreSQL (embedded, throwaway) and one real Temporal dev server
 * (headless, throwaway) for the whole run, migrates the database, then runs every `*.test.ts` with
 * Node's built-in test runner against them. Pass paths to run a subset: `npm test -- src/users`.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { loadConfig } from "../src/config";
import { createLogger } from "../src/logger";
import { startLocalStack } from "../src/infra/local-stack";
import { createDb, migrateLatest } from "../src/db/knex";
import { freePort } from "../src/infra/ports";
import { SecretBox, parseMasterKey } from "../src/crypto/secret-box";
import { assertEncryptionKeyMatches } from "../src/crypto/key-check";

const ROOT = path.resolve(__dirname, "..");
const SEARCH_DIRS = ["src", "test", "activities", "workflows", "temporal", "bench"];

function findTests(targets: string[]): string[] {
  const found: string[] = [];
  const walk = (entry: string) => {
    const stat = fs.statSync(entry);
    if (stat.isDirectory()) {
      for (const child of fs.readdirSync(entry)) if (child !== "node_modules") walk(path.join(entry, child));
    } else if (entry.endsWith(".test.ts")) {
      found.push(path.relative(ROOT, entry));
    }
  };
  for (const target of targets) walk(path.resolve(ROOT, target));
  return found.sort();
}

async function main(): Promise<number> {
  const targets = process.argv.slice(2);
  const files = findTests(targets.length > 0 ? targets : SEARCH_DIRS.filter((d) => fs.existsSync(path.join(ROOT, d))));
  if (files.length === 0) {
    console.error("no test files found");
    return 1;
  }
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "automata-test-"));
  fs.chmodSync(home, 0o755);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AUTOMATA_HOME: home,
    AUTOMATA_PG_PORT: String(await freePort()),
    TEMPORAL_PORT: String(await freePort()),
    TEMPORAL_UI_PORT: String(await freePort()),
    LOG_LEVEL: process.env.LOG_LEVEL ?? "warn",
    // The run's database is one deployment: every test app and worker process seals with this key.
    AUTOMATA_ENCRYPTION_KEY: crypto.randomBytes(32).toString("base64"),
  };
  const config = loadConfig(env);
  const logger = createLogger(config.LOG_LEVEL, "test-runner");
  const started = Date.now();
  const starting = startLocalStack(config, logger, { headless: true, ephemeral: true });
  // Ctrl-C (also while the servers start), a kill or a closed terminal: the servers run detached,
  // so nothing but this stops them, and their folder is this run's own (no later start finds them).
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(signal, () => {
      void starting
        .then((started) => started.stop())
        .catch(() => undefined)
        .finally(() => process.exit(130));
    });
  }
  const stack = await starting;
  console.log(`# infrastructure up in ${Date.now() - started} ms: PostgreSQL ${stack.postgres ? "embedded" : "external"}, Temporal ${stack.temporalAddress}`);
  try {
    const db = createDb(stack.databaseUrl, 2);
    await migrateLatest(db);
    // Pin the run's key before any test starts a process with another one on purpose.
    await assertEncryptionKeyMatches(db, new SecretBox(parseMasterKey(env.AUTOMATA_ENCRYPTION_KEY!)), logger);
    await db.destroy();
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "--test", "--test-concurrency=2", "--test-timeout=1200000", ...files],
      { cwd: ROOT, stdio: "inherit", env: { ...env, DATABASE_URL: stack.databaseUrl, TEMPORAL_ADDRESS: stack.temporalAddress } },
    );
    return await new Promise<number>((resolve) => child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0))));
  } finally {
    await stack.stop();
    fs.rmSync(home, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error("test run failed to start:", error);
    process.exit(1);
  },
);
