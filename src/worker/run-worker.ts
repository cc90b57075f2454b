import { NativeConnection, Worker, type WorkerOptions } from "@temporalio/worker";
import type { Deps } from "../deps";
import { createActivities } from "../../activities";
import { addProviderPoolSource } from "../metrics/registry";

/** A running Temporal worker and how to stop it gracefully. */
export interface RunningWorker {
  worker: Worker;
  /** Resolves when the worker has stopped (after shutdown or a fatal error). */
  done: Promise<void>;
  shutdown(): Promise<void>;
}

/**
 * Starts a worker on our task queue. Workflow code is bundled from `workflows/` at start, unless
 * AUTOMATA_WORKFLOW_BUNDLE points at a prebuilt bundle (production images).
 */
export async function startWorker(deps: Deps, temporalAddress: string, overrides: Partial<WorkerOptions> = {}): Promise<RunningWorker> {
  const connection = await NativeConnection.connect({ address: temporalAddress });
  const bundlePath = process.env.AUTOMATA_WORKFLOW_BUNDLE;
  const worker = await Worker.create({
    connection,
    namespace: deps.config.TEMPORAL_NAMESPACE,
    taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
    ...(bundlePath ? { workflowBundle: { codePath: bundlePath } } : { workflowsPath: require.resolve("../../workflows") }),
    activities: createActivities(deps),
    shutdownGraceTime: deps.config.AUTOMATA_SHUTDOWN_GRACE,
    maxCachedWorkflows: deps.config.AUTOMATA_WORKER_CACHED_WORKFLOWS,
    ...overrides,
  });
  // The worker is where pushes are sent: /metrics reports its provider pools while it runs.
  const removePoolSource = addProviderPoolSource(() => deps.push.poolUsage());
  const done = worker.run().finally(() => {
    removePoolSource();
    return connection.close();
  });
  return {
    worker,
    done,
    shutdown: async () => {
      if (worker.getState() === "RUNNING") worker.shutdown();
      await done;
    },
  };
}
