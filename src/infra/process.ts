import type { Logger } from "pino";
import { Runtime, makeTelemetryFilterString, type LogLevel } from "@temporalio/worker";
import { setTemporalMetricsAddress } from "../metrics/exposition";

/** Requires an environment variable in production entry points, with a message saying why. */
export function requireEnv(name: string, why: string): string {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is required: ${why}`);
    process.exit(2);
  }
  return value;
}

/** Runs `stop` once on SIGINT/SIGTERM, then exits; a second signal exits at once. */
export function onShutdownSignal(logger: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(1);
    stopping = true;
    logger.info({ signal }, "shutting down");
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}

let runtimeInstalled = false;

/**
 * Sends the Temporal SDK's own logs through our pino logger (JSON, same level) instead of its
 * default console logger, so a worker's output is one consistent stream. With `metricsAddress`
 * (host:port) the SDK also exports its metrics (task slots, schedule-to-start and task latencies)
 * there, prefixed `automata_temporal_`, and our /metrics appends them; empty or absent: no exporter.
 */
export function installTemporalRuntimeLogger(logger: Logger, options: { metricsAddress?: string } = {}): void {
  // Runtime.install may run once per process; later calls (several workers in one test file) reuse it.
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  const level = (["trace", "debug", "info", "warn", "error"].includes(logger.level) ? logger.level.toUpperCase() : "WARN") as LogLevel;
  const forward = (lvl: "trace" | "debug" | "info" | "warn" | "error") => (message: string, meta?: Record<string, unknown>) =>
    logger[lvl]({ component: "temporal-sdk", ...meta }, message);
  Runtime.install({
    // Its default handlers shut every worker down on SIGINT/SIGTERM and then remove themselves, so
    // a signal before our own handlers exist was swallowed (a start went on running). Each entry
    // point handles signals itself.
    shutdownSignals: [],
    logger: {
      log: (lvl, message, meta) => forward(lvl.toLowerCase() as "info")(message, meta),
      trace: forward("trace"),
      debug: forward("debug"),
      info: forward("info"),
      warn: forward("warn"),
      error: forward("error"),
    },
    telemetryOptions: {
      logging: { filter: makeTelemetryFilterString({ core: level === "TRACE" ? "TRACE" : "WARN" }), forward: {} },
      ...(options.metricsAddress
        ? {
            metrics: {
              metricPrefix: "automata_temporal_",
              prometheus: { bindAddress: options.metricsAddress, unitSuffix: true, useSecondsForDurations: true },
            },
          }
        : {}),
    },
  });
  setTemporalMetricsAddress(options.metricsAddress);
}

/** One part of the platform to stop, named for the log when it fails. */
export interface StopStep {
  name: string;
  stop: () => Promise<unknown> | unknown;
}

/**
 * Runs every step in order even when one before it fails (a crashed worker must not leave the
 * Temporal dev server and PostgreSQL running behind it); answers whether all succeeded.
 */
export async function runStopSteps(steps: readonly StopStep[], onError: (name: string, error: unknown) => void): Promise<boolean> {
  let allStopped = true;
  for (const step of steps) {
    try {
      await step.stop();
    } catch (error) {
      allStopped = false;
      onError(step.name, error);
    }
  }
  return allStopped;
}
