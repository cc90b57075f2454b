import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { createLogger } from "../src/logger";
import { freePort } from "../src/infra/ports";
import { isAlive } from "../src/infra/process-info";
import { buildTemporalCli, goInstallEnv, startTemporalDevServer, temporalCliVersion, waitForTemporal } from "../temporal/launcher";

// `npm start` killed with SIGKILL leaves its Temporal dev server running (reparented, holding the
// ports and the SQLite file). The next start must not merely reuse it — nothing would ever stop it.

const ROOT = path.resolve(__dirname, "..");
const logger = createLogger("error", "launcher-test");

/**
 * Starts test/support/temporal-holder.ts (a stand-in for npm start) and answers it with its dev
 * server's pid. As a `job` it runs in a process group of its own, as a shell starts a foreground
 * job, and starts the server detached.
 */
async function startHolder(dbFile: string, port: number, options: { job: boolean }): Promise<{ holder: ReturnType<typeof spawn>; server: number }> {
  const args = ["--import", "tsx", path.join(ROOT, "test/support/temporal-holder.ts"), dbFile, String(port), ...(options.job ? ["detached"] : [])];
  const holder = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"], detached: options.job });
  try {
    const server = await new Promise<number>((resolve, reject) => {
      let out = "";
      holder.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const ready = /ready (\d+)/.exec(out);
        if (ready) resolve(Number(ready[1]));
      });
      holder.on("exit", (code) => reject(new Error(`holder exited ${code}`)));
    });
    return { holder, server };
  } catch (error) {
    holder.kill("SIGKILL");
    throw error;
  }
}

test("a dev server orphaned by a SIGKILLed start is stopped and replaced by one this start owns", { timeout: 180_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-temporal-orphan-"));
  const dbFile = path.join(dir, "temporal.db");
  const port = await freePort();
  const { holder, server: orphan } = await startHolder(dbFile, port, { job: false });
  try {
    holder.kill("SIGKILL");
    await new Promise((r) => holder.once("exit", r));
    assert.ok(isAlive(orphan), "the dev server outlived its SIGKILLed parent");

    const replacement = await startTemporalDevServer({ port, uiPort: await freePort(), namespace: "default", dbFile, logger, headless: true });
    try {
      assert.equal(replacement.owned, true, "this start owns (and will stop) its server");
      assert.ok(!isAlive(orphan) || fs.readFileSync(`/proc/${orphan}/stat`, "utf8").includes(") Z "), "the orphan was stopped");
      await waitForTemporal(replacement.address, 10_000);
    } finally {
      await replacement.stop();
    }
    assert.equal(fs.existsSync(`${dbFile}.pid`), false, "its pid file goes with it");
  } finally {
    holder.kill("SIGKILL");
    if (orphan && isAlive(orphan)) process.kill(orphan, "SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Whether the process has gone (isAlive counts a zombie nobody reaped as gone). */
function gone(pid: number): boolean {
  return !isAlive(pid);
}

test("started detached, the dev server is out of reach of the Ctrl-C a terminal sends its starter's process group, and goes when its starter exits", { timeout: 180_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-temporal-detached-"));
  const dbFile = path.join(dir, "temporal.db");
  const port = await freePort();
  const servers: number[] = [];
  try {
    const first = await startHolder(dbFile, port, { job: true });
    servers.push(first.server);
    // What the terminal's Ctrl-C does: SIGINT to every process of the foreground group. The holder
    // has no handler and dies of it; npm start's handler would drain the worker and then stop the server.
    process.kill(-first.holder.pid!, "SIGINT");
    await new Promise((r) => first.holder.once("exit", r));
    assert.ok(!gone(first.server), "the dev server did not get the group's SIGINT");
    await waitForTemporal(`127.0.0.1:${port}`, 5_000);

    // A starter that exits (a crash handler's process.exit) stops the server it started.
    process.kill(first.server, "SIGTERM");
    for (let waited = 0; waited < 10_000 && !gone(first.server); waited += 50) await new Promise((r) => setTimeout(r, 50));
    const second = await startHolder(dbFile, port, { job: true });
    servers.push(second.server);
    second.holder.kill("SIGTERM");
    await new Promise((r) => second.holder.once("exit", r));
    for (let waited = 0; waited < 10_000 && !gone(second.server); waited += 50) await new Promise((r) => setTimeout(r, 50));
    assert.ok(gone(second.server), "the server went with the process that started it");
  } finally {
    for (const pid of servers) if (!gone(pid)) process.kill(pid, "SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("goInstallEnv gives go its caches under ours only when HOME is unset and go has no other place for them", () => {
  const root = "/var/cache/automata-signal";
  const cases: Array<[string, NodeJS.ProcessEnv, NodeJS.ProcessEnv]> = [
    ["HOME set: go's own defaults", { HOME: "/home/ci" }, {}],
    ["no HOME", {}, { GOCACHE: `${root}/go-build`, GOPATH: `${root}/go` }],
    ["no HOME, caches given", { GOCACHE: "/c", GOMODCACHE: "/m" }, { GOCACHE: "/c", GOMODCACHE: "/m" }],
    ["no HOME, XDG cache and GOPATH given", { XDG_CACHE_HOME: "/x", GOPATH: "/g" }, { XDG_CACHE_HOME: "/x", GOPATH: "/g" }],
  ];
  for (const [name, env, expected] of cases) {
    const out = goInstallEnv(env, "/staging", root);
    assert.deepEqual(
      { GOCACHE: out.GOCACHE, GOPATH: out.GOPATH, GOMODCACHE: out.GOMODCACHE, XDG_CACHE_HOME: out.XDG_CACHE_HOME },
      { GOCACHE: expected.GOCACHE, GOPATH: expected.GOPATH, GOMODCACHE: expected.GOMODCACHE, XDG_CACHE_HOME: expected.XDG_CACHE_HOME },
      name,
    );
    assert.deepEqual([out.GOBIN, out.GOFLAGS], ["/staging", "-mod=mod"], name);
  }
});

test("a Temporal CLI build that fails part-way leaves no binary in the cache for the next start to take; one that succeeds is moved in whole", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "temporal-build-"));
  const into = path.join(dir, "bin");
  // Stands in for the Go toolchain (not for Temporal): writes into $GOBIN as go install does.
  const fakeGo = (name: string, script: string) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    return file;
  };
  const logger = createLogger("error", "temporal-build-test");
  try {
    fs.mkdirSync(into);
    // A staging directory left by a build whose process is gone.
    fs.mkdirSync(path.join(into, ".build-2147483646-abc"));
    const killedMidCopy = fakeGo("go-fails", 'printf "\\177ELF" > "$GOBIN/temporal"; chmod +x "$GOBIN/temporal"; echo "signal: killed" >&2; exit 1');
    await assert.rejects(buildTemporalCli(killedMidCopy, logger, into, { HOME: dir, PATH: process.env.PATH }), /failed \(exit 1\): signal: killed/);
    assert.deepEqual(fs.readdirSync(into), [], "no truncated temporal, no staging directories");

    const builds = fakeGo("go-builds", 'printf "#!/bin/sh\\necho temporal version 1.5.1\\n" > "$GOBIN/temporal"; chmod +x "$GOBIN/temporal"');
    const built = await buildTemporalCli(builds, logger, into, { HOME: dir, PATH: process.env.PATH });
    assert.equal(built, path.join(into, "temporal"));
    assert.deepEqual(fs.readdirSync(into), ["temporal"]);
    assert.equal(temporalCliVersion(built), "temporal version 1.5.1");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
