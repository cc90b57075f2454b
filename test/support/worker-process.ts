/**
 * A worker in its own process, so tests can kill it with SIGKILL mid-send (or stop it with SIGTERM,
 * as a deploy does) and start another.
 * Environment: DATABASE_URL, TEMPORAL_ADDRESS, TEMPORAL_TASK_QUEUE, AUTOMATA_ENCRYPTION_KEY, and
 * AUTOMATA_TEST_SIMULATOR (JSON of the in-test simulator's target). Prints "worker ready" once polling.
 */
import { loadConfig } from "../../src/config";
import { createLogger } from "../../src/logger";
import { closeDeps, createDeps } from "../../src/runtime";
import { startWorker } from "../../src/worker/run-worker";
import { installTemporalRuntimeLogger, onShutdownSignal } from "../../src/infra/process";
import type { SimulatorTarget } from "../../src/messages/delivery";
import { assertEncryptionKeyMatches } from "../../src/crypto/key-check";

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL, "test-worker-process");
  installTemporalRuntimeLogger(logger);
  const simulator = process.env.AUTOMATA_TEST_SIMULATOR ? (JSON.parse(process.env.AUTOMATA_TEST_SIMULATOR) as SimulatorTarget) : undefined;
  const deps = await createDeps({
    config,
    logger,
    databaseUrl: process.env.DATABASE_URL!,
    temporalAddress: process.env.TEMPORAL_ADDRESS!,
    encryptionKey: process.env.AUTOMATA_ENCRYPTION_KEY!,
    simulator,
    campaignPool: true,
  });
  await assertEncryptionKeyMatches(deps.db, deps.secrets, logger);
  const worker = await startWorker(deps, process.env.TEMPORAL_ADDRESS!);
  // SIGTERM as the production worker handles it (src/worker.ts); tests SIGKILL for a crash.
  onShutdownSignal(logger, async () => {
    await worker.shutdown();
    await closeDeps(deps);
  });
  console.log("worker ready");
  await worker.done;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
