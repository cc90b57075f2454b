/**
 * Test helper process: starts a headless Temporal dev server on port argv[3] with its database at
 * argv[2] (detached when argv[4] is `detached`), prints `ready <pid>` and waits to be killed — a
 * stand-in for an `npm start` that dies by SIGKILL or by a signal it does not handle. SIGTERM makes
 * it exit without stopping the server (process.exit, as a crash handler would).
 */
import fs from "node:fs";
import { createLogger } from "../../src/logger";
import { startTemporalDevServer } from "../../temporal/launcher";
import { freePort } from "../../src/infra/ports";

async function main(): Promise<void> {
  const dbFile = process.argv[2]!;
  process.on("SIGTERM", () => process.exit(3));
  await startTemporalDevServer({ port: Number(process.argv[3]), uiPort: await freePort(), namespace: "default", dbFile, logger: createLogger("error", "holder"), headless: true, detached: process.argv[4] === "detached" });
  process.stdout.write(`ready ${fs.readFileSync(`${dbFile}.pid`, "utf8").trim()}\n`);
  setInterval(() => undefined, 60_000);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
