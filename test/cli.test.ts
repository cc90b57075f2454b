import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import path from "node:path";
import { execFile } from "node:child_process";
import { startTestApp, type TestApp } from "./support/harness";
import { startMetricsServer } from "../src/metrics/exposition";

const CLI = path.resolve(__dirname, "..", "bin", "automata.js");
let app: TestApp;

before(async () => {
  app = await startTestApp();
});
after(async () => {
  await app.close();
});

/** Runs the CLI asynchronously: the API it calls lives in this very process, so a sync spawn would deadlock. */
function run(args: string[]): Promise<{ status: number; json: any; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 60_000 }, (error, stdout, stderr) => {
      const status = error ? Number((error as { code?: number }).code ?? 1) : 0;
      let json: unknown;
      try {
        json = stdout.trim() ? JSON.parse(stdout) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ status, json, stdout, stderr });
    });
  });
}

async function applicationNames(): Promise<string[]> {
  const listed = await automata("apps", "list", "--per-page", "100");
  assert.equal(listed.status, 0, listed.stderr);
  return (listed.json.data.applications as Array<{ name: string }>).map((a) => a.name);
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

test("a quota that is not a whole number is a usage error, not an unlimited application", async () => {
  // Number("5k") is NaN, which JSON sends as null: the API would read it as "no daily limit".
  for (const bad of ["5k", "-1", "1.5", ""]) {
    const refused = await automata("apps", "create", "--name", `Typo ${bad}`, `--daily-quota=${bad}`);
    assert.equal(refused.status, 2, `--daily-quota "${bad}": ${refused.stdout}`);
    assert.match(refused.stderr, /--daily-quota must be a whole number/);
  }
  const monthly = await automata("apps", "create", "--name", "Typo monthly", "--monthly-quota", "1e9x");
  assert.equal(monthly.status, 2);
  const grace = await automata("apps", "rotate-key", "01935d8e-0000-7000-8000-000000000000", "--grace-seconds", "1h");
  assert.equal(grace.status, 2);
  assert.match(grace.stderr, /--grace-seconds must be a whole number/);
  assert.ok(!(await applicationNames()).some((name) => name.startsWith("Typo")), "nothing was created");
  const zero = await automata("apps", "create", "--name", "Zero Quota", "--daily-quota", "0");
  assert.equal(zero.status, 0, zero.stderr);
  assert.equal((await automata("apps", "get", zero.json.data.application_id)).json.data.quota.daily_quota, 0);
});

test("usage errors exit 2 with the usage on stderr; --help exits 0", async () => {
  const unknownOption = await automata("apps", "create", "--name", "X", "--dialy-quota", "5");
  assert.equal(unknownOption.status, 2, unknownOption.stderr);
  assert.match(unknownOption.stderr, /--dialy-quota/);
  assert.match(unknownOption.stderr, /^usage: automata/m);
  const unknownCommand = await automata("apps", "delete", "x");
  assert.equal(unknownCommand.status, 2);
  assert.match(unknownCommand.stderr, /unknown command "apps delete"/);
  const noId = await automata("apps", "get");
  assert.equal(noId.status, 2);
  // An unquoted name with a space: nothing is created under half of it. (A name of its own: other
  // test files create applications meanwhile.)
  const half = `Unquoted${Date.now()}`;
  const unquoted = await automata("apps", "create", "--name", half, "App");
  assert.equal(unquoted.status, 2, unquoted.stderr);
  assert.match(unquoted.stderr, /unexpected argument\(s\) "App"/);
  assert.deepEqual(await app.deps.db("applications").whereIn("name", [half, `${half} App`]).pluck("name"), []);
  const help = await run(["--help"]);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^usage: automata/m);
  assert.match(help.stdout, /exit status/);
});

test("an API that cannot be reached or does not answer JSON fails with exit 1 and a message that says so", async () => {
  const closed = await new Promise<number>((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
  const unreachable = await run(["apps", "list", "--api", `http://127.0.0.1:${closed}`, "--token", app.adminToken]);
  assert.equal(unreachable.status, 1);
  assert.match(unreachable.stderr, new RegExp(`cannot reach the API at http://127\\.0\\.0\\.1:${closed}: ECONNREFUSED`));
  // The worker's metrics port is a classic wrong --api: it answers plain text.
  const metrics = await startMetricsServer(app.deps.logger, 0, "127.0.0.1");
  try {
    const wrong = await run(["apps", "list", "--api", `http://127.0.0.1:${metrics.port}`, "--token", app.adminToken]);
    assert.equal(wrong.status, 1);
    assert.match(wrong.stderr, /answered HTTP 404 without a JSON body/);
    assert.doesNotMatch(wrong.stderr, /SyntaxError|Unexpected token/);
    assert.ok(!wrong.stderr.includes(app.adminToken), "the token is never printed");
  } finally {
    await metrics.close();
  }
});

test("--api accepts the URL the banner shows (with /api/v1, or a trailing slash) as well as the server root", async () => {
  for (const api of [`${app.url}/api/v1`, `${app.url}/api/v1/`, `${app.url}/`]) {
    const listed = await run(["apps", "list", "--api", api, "--token", app.adminToken]);
    assert.equal(listed.status, 0, `${api}: ${listed.stderr}`);
    assert.ok(Array.isArray(listed.json.data.applications));
  }
});

test("an id is sent as one path segment", async () => {
  const created = await automata("apps", "create", "--name", "Segment");
  // Unencoded, the "?…" would turn into a query string and show the application: a wrong id must not.
  const shown = await automata("apps", "get", `${created.json.data.application_id}?x=1`);
  assert.notEqual(shown.status, 0, JSON.stringify(shown.json));
});

test("`automata apps list` pages past the first 20 applications", async () => {
  await automata("apps", "create", "--name", "Page A");
  await automata("apps", "create", "--name", "Page B");
  const second = await automata("apps", "list", "--per-page", "1", "--page", "2");
  assert.equal(second.status, 0, second.stderr);
  // Other test files create applications at the same time, so which one is on page 2 is not asserted.
  assert.equal(second.json.data.applications.length, 1);
  assert.equal(second.json.data.pagination.page, 2);
  assert.equal(second.json.data.pagination.per_page, 1);
  assert.equal((await automata("apps", "list", "--page", "x")).status, 2);
});

test("`migrate --help` answers the usage with exit 0; a wrong argument, or production without DATABASE_URL, exits 2 before touching a database", async () => {
  const migrate = (args: string[], overrides: Record<string, string> = {}) =>
    new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
      // A database that is not there: had it gone on, it would fail rather than migrate the run's.
      const env = { ...process.env, DATABASE_URL: "postgres://nobody:x@127.0.0.1:1/none", ...overrides };
      execFile(process.execPath, ["--import", "tsx", path.resolve(__dirname, "..", "src", "cli", "migrate.ts"), ...args], { encoding: "utf8", timeout: 60_000, env }, (error, stdout, stderr) =>
        resolve({ status: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  const help = await migrate(["--help"]);
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /^usage: migrate/m);
  assert.match(help.stdout, /--status/);
  const wrong = await migrate(["--statsu"]);
  assert.equal(wrong.status, 2);
  assert.match(wrong.stderr, /^usage: migrate/m);
  // The production release command without its database secret refuses instead of migrating an
  // embedded database of its own and reporting success.
  const unset = await migrate([], { NODE_ENV: "production", DATABASE_URL: "" });
  assert.equal(unset.status, 2, unset.stdout);
  assert.match(unset.stderr, /DATABASE_URL is required in production/);
});
