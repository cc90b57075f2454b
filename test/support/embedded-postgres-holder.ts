/**
 * Test helper process: starts the embedded PostgreSQL in argv[2] on port argv[3], prints `ready`
 * and waits to be killed — a stand-in for an `npm start` that dies by SIGKILL.
 */
import { createLogger } from "../../src/logger";
import { startEmbeddedPostgres } from "../../src/infra/postgres";

async function main(): Promise<void> {
  await startEmbeddedPostgres({ dataDir: process.argv[2]!, port: Number(process.argv[3]), database: "held", logger: createLogger("error", "holder") });
  process.stdout.write("ready\n");
  setInterval(() => undefined, 60_000);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
