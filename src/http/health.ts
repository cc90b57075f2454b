import { temporal } from "@temporalio/proto";
import type { Deps } from "../deps";

/** Result of one readiness probe; `ready` only when every check passed. */
export interface ReadinessReport {
  ready: boolean;
  checks: Record<"database" | "temporal" | "worker", { ok: boolean; error?: string }>;
}

const PROBE_TIMEOUT_MS = 2_000;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Thrown by a probe whose failure text is ours and safe to show (no hostnames, no server messages). */
class PublicProbeError extends Error {}

/**
 * Runs one check. /readyz is unauthenticated (load balancers call it), so the answer names only
 * what failed; the underlying error (hostnames, PostgreSQL's authentication messages) goes to the log.
 */
async function probe(deps: Deps, run: () => Promise<unknown>, what: string): Promise<{ ok: boolean; error?: string }> {
  try {
    await withTimeout(run(), PROBE_TIMEOUT_MS, what);
    return { ok: true };
  } catch (error) {
    if (error instanceof PublicProbeError) return { ok: false, error: error.message };
    deps.logger.warn({ err: error, check: what }, "readiness check failed");
    return { ok: false, error: `${what} is not reachable (details in the server log)` };
  }
}

/** Checks PostgreSQL, the Temporal frontend, and that at least one worker polls our task queue. */
export async function checkReadiness(deps: Deps): Promise<ReadinessReport> {
  const { namespace } = deps.temporal.options;
  const [database, temporalCheck, worker] = await Promise.all([
    probe(deps, () => deps.db.raw("select 1"), "PostgreSQL"),
    // A gRPC deadline, not just our race: without it the client's retry interceptor keeps retrying a
    // probe against a down server in the background long after the request was answered.
    probe(deps, () => deps.temporal.connection.withDeadline(Date.now() + PROBE_TIMEOUT_MS, () => deps.temporal.workflowService.getSystemInfo({})), "Temporal"),
    probe(deps, async () => {
      const response = await deps.temporal.connection.withDeadline(Date.now() + PROBE_TIMEOUT_MS, () => deps.temporal.workflowService.describeTaskQueue({
        namespace,
        taskQueue: { name: deps.config.TEMPORAL_TASK_QUEUE, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
        taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
      }));
      if ((response.pollers ?? []).length === 0) throw new PublicProbeError("no worker polls the task queue");
    }, "Temporal task queue"),
  ]);
  const checks = { database, temporal: temporalCheck, worker };
  return { ready: database.ok && temporalCheck.ok && worker.ok, checks };
}
