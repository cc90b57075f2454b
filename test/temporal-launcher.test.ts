import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { createLogger } from "../src/logger";
import { freePort } from "../src/infra/ports";
import { isAlive } from "../src/infra/process-info";
import { startTemporalDevServer, waitForTemporal } from "../temporal/launcher";

// `npm start` killed with SIGKILL leaves its Temporal dev server running (reparented, holding the
// ports and the SQLite file). The next start must not merely reuse it — nothing would ever stop it.

const ROOT = path.resolve(__dirname, "..");
const logger = createLogger("error", "launcher-test");

test("a dev server orphaned by a SIGKILLed start is stopped and replaced by one this start owns", { timeout: 180_000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "automata-temporal-orphan-"));
  const dbFile = path.join(dir, "temporal.db");
  const port = await freePort();
  const holder = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "test/support/temporal-holder.ts"), dbFile, String(port)], { cwd: ROOT, stdio: ["ignore", "pipe", "inherit"] });
  let orphan = 0;
  try {
    orphan = await new Promise<number>((resolve, reject) => {
      let out = "";
      holder.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const ready = /ready (\d+)/.exec(out);
        if (ready) resolve(Number(ready[1]));
      });
      holder.on("exit", (code) => reject(new Error(`holder exited ${code}`)));
    });
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
