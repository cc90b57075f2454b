/**
 * Test helper process: starts the embedded PostgreSQL in argv[2] on port argv[3] (detached when
 * argv[4] is `detached`), prints `ready` and waits to be killed — a stand-in for an `npm start`
 * that dies by SIGKILL or by a signal it does not handle. SIGTERM makes it exit without stopping
 * the server (process.exit, as a crash handler would).
 */
import { createLogger } from "../../src/logger";
import { startEmbeddedPostgres } from "../../src/infra/postgres";

async function main(): Promise<void> {
  process.on("SIGTERM", () => process.exit(3));
  await startEmbeddedPostgres({ dataDir: process.argv[2]!, port: Number(process.argv[3]), database: "held", logger: createLogger("error", "holder"), detached: process.argv[4] === "detached" });
  process.stdout.write("ready\n");
  setInterval(() => undefined, 60_000);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
