/** Command-line flags the benchmarks share. */
import { parseArgs } from "node:util";

/** A benchmark's parsed command line. */
export interface BenchFlags<C extends string, S extends string> {
  /** Each count flag's value: a positive integer. */
  counts: Record<C, number>;
  /**
   * `--provider-latency-ms N`: every provider request waits N ms in the simulator, as the round trip
   * to Apple or Google adds (default 0: loopback, where CPU alone limits a run).
   */
  providerLatencyMs: number;
  /** Which of the switches were given. */
  switches: Record<S, boolean>;
}

/**
 * Parses `--name value` and `--name=value`. Anything else is refused, not ignored: a typo, or
 * `npm run bench:campaign --recipients 1000000` without the `--` (npm takes the flag and leaves
 * the number), would otherwise run for minutes on the default and report it as the asked size.
 */
export function benchFlags<C extends string, S extends string = never>(countDefaults: Record<C, number>, switchNames: readonly S[] = []): BenchFlags<C, S> {
  const options: Record<string, { type: "string" | "boolean" }> = { "provider-latency-ms": { type: "string" } };
  for (const name of Object.keys(countDefaults)) options[name] = { type: "string" };
  for (const name of switchNames) options[name] = { type: "boolean" };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: process.argv.slice(2), options, strict: true, allowPositionals: false }));
  } catch (error) {
    const known = Object.keys(options).map((name) => `--${name}`).join(", ");
    throw new Error(`${(error as Error).message} (this benchmark takes ${known}; after npm run, put them after --)`);
  }
  const counts = {} as Record<C, number>;
  for (const [name, fallback] of Object.entries(countDefaults) as Array<[C, number]>) {
    const given = values[name];
    const value = typeof given === "string" ? Number(given) : fallback;
    if (!Number.isSafeInteger(value) || value <= 0) throw new Error(`--${name} must be a whole number above 0, not ${String(given)}`);
    counts[name] = value;
  }
  const latency = values["provider-latency-ms"];
  const providerLatencyMs = typeof latency === "string" ? Number(latency) : 0;
  if (!Number.isFinite(providerLatencyMs) || providerLatencyMs < 0) throw new Error(`--provider-latency-ms must be a number ≥ 0, not ${String(latency)}`);
  const switches = {} as Record<S, boolean>;
  for (const name of switchNames) switches[name] = values[name] === true;
  return { counts, providerLatencyMs, switches };
}
