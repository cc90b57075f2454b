import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { execFile } from "node:child_process";
import { startTestApp, type TestApp } from "./support/harness";

const CLI = path.resolve(__dirname, "..", "bin", "automata.js");
let app: TestApp;

before(async () => {
  app = await startTestApp();
});
after(async () => {
  await app.close();
});

/** Runs the CLI asynchronously: the API it calls lives in this very process, so a sync spawn would deadlock. */
function run(args: string[]): Promise<{ status: number; json: any; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) => {
      const status = error ? Number((error as { code?: number }).code ?? 1) : 0;
      resolve({ status, json: stdout.trim() ? JSON.parse(stdout) : undefined, stderr });
    });
  });
}

function automata(...args: string[]) {
  return run([...args, "--api", app.url, "--token", app.adminToken]);
}

test("`automata apps create` creates an application through the admin API and prints its key once", async () => {
  const created = await automata("apps", "create", "--name", "CLI App", "--daily-quota", "500", "--tier", "premium");
  assert.equal(created.status, 0, created.stderr);
  assert.match(created.json.data.api_key, /^as_/);
  const shown = await automata("apps", "get", created.json.data.application_id);
  assert.equal(shown.status, 0, shown.stderr);
  assert.equal(shown.json.data.name, "CLI App");
  assert.equal(shown.json.data.quota.daily_quota, 500);
  assert.equal(shown.json.data.rate_limit_tier, "premium");
  assert.ok(!JSON.stringify(shown.json).includes(created.json.data.api_key));
});

test("`automata apps rotate-key` issues a new key; a wrong token fails with a non-zero exit", async () => {
  const created = await automata("apps", "create", "--name", "Rotate Me");
  const rotated = await automata("apps", "rotate-key", created.json.data.application_id);
  assert.equal(rotated.status, 0, rotated.stderr);
  assert.notEqual(rotated.json.data.api_key, created.json.data.api_key);
  const refused = await run(["apps", "list", "--api", app.url, "--token", "not-the-admin-token"]);
  assert.equal(refused.status, 1);
  assert.equal(refused.json.error.code, "authentication_failed");
});
