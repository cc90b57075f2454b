/** Command-line flags the benchmarks share. */

/**
 * `--provider-latency-ms N`: every provider request waits N ms in the simulator, as the round trip
 * to Apple or Google adds (default 0: loopback, where CPU alone limits a run).
 */
export function providerLatencyFlag(): number {
  const index = process.argv.indexOf("--provider-latency-ms");
  if (index < 0) return 0;
  const value = Number(process.argv[index + 1]);
  if (!Number.isFinite(value) || value < 0) throw new Error("--provider-latency-ms must be a number ≥ 0");
  return value;
}

/** Reads `--name value` flags with numeric defaults. */
export function numericFlag(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  const value = index >= 0 ? Number(process.argv[index + 1]) : fallback;
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}
