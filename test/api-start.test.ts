import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import path from "node:path";
import { spawn } from "node:child_process";
import { freePort } from "../src/infra/ports";

// The production API process started while its database is away (a deploy or `fly secrets set`
// during an outage) must wait for PostgreSQL, as the worker does, not exit into the platform's
// restart limit.
test("the production API started while PostgreSQL is unreachable waits for it instead of exiting", { timeout: 60_000 }, async () => {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: `postgres://nobody:x@127.0.0.1:${await freePort()}/none`,
    TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}`,
    AUTOMATA_ENCRYPTION_KEY: crypto.randomBytes(32).toString("base64"),
    PORT: String(await freePort()),
    AUTOMATA_API_METRICS_PORT: String(await freePort()),
    LOG_LEVEL: "warn",
    NODE_ENV: "production",
  };
  const child = spawn(process.execPath, ["--import", "tsx", "src/api.ts"], { cwd: path.resolve(__dirname, ".."), env, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
  try {
    const waited = await Promise.race([
      exited.then((code) => `exited with ${code}`),
      new Promise<string>((resolve) => {
        const poll = setInterval(() => {
          if (/PostgreSQL is unavailable; the API waits for it before listening/.test(output)) {
            clearInterval(poll);
            resolve("waiting");
          }
        }, 100);
      }),
    ]);
    assert.equal(waited, "waiting", output);
    // Still waiting a few retries later, not listening.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    assert.equal(child.exitCode, null, output);
    await assert.rejects(fetch(`http://127.0.0.1:${env.PORT}/healthz`), "it listens only after the key check");
  } finally {
    child.kill("SIGTERM");
    await exited;
  }
});
