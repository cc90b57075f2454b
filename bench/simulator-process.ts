/**
 * The provider simulator in a process of its own, for benchmarks: Apple and Google are remote in
 * production, so the worker's measured CPU and RSS must not include the fake's. Prints the
 * SimulatorTarget as one JSON line on stdout, then serves until stdin closes (its parent exited).
 * `--provider-latency-ms N` delays every request by N ms, as the round trip to a remote provider does.
 */
import { createLogger } from "../src/logger";
import { startSimulator } from "../src/infra/simulator";
import { benchFlags } from "./flags";

async function main(): Promise<void> {
  const running = await startSimulator(createLogger("error", "bench-simulator"), {}, { latencyMs: benchFlags({}).providerLatencyMs });
  process.stdout.write(`${JSON.stringify(running.target)}\n`);
  process.stdin.resume();
  process.stdin.on("end", () => void running.stop().finally(() => process.exit(0)));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
