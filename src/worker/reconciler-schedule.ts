import { ScheduleAlreadyRunning, ScheduleOverlapPolicy } from "@temporalio/client";
import type { Deps } from "../deps";
import { reconcilerWorkflow, RECONCILER_SCHEDULE_ID } from "../../workflows/reconciler";

/** Options of the reconciler schedule. */
export interface ReconcilerScheduleOptions {
  /** How often it runs. */
  intervalMs: number;
  /** Messages younger than this are left to the API's own start. */
  olderThanMs: number;
  /** Only this application's rows (tests sharing one database across files); absent = all. */
  applicationId?: string;
}

/**
 * Creates the Temporal Schedule that runs the reconciler (one per task queue); a schedule that
 * already exists is left as it is, so every worker can call this at start.
 */
export async function ensureReconcilerSchedule(deps: Deps, options: ReconcilerScheduleOptions): Promise<string> {
  const scheduleId = `${RECONCILER_SCHEDULE_ID}-${deps.config.TEMPORAL_TASK_QUEUE}`;
  try {
    await deps.temporal.schedule.create({
      scheduleId,
      spec: { intervals: [{ every: options.intervalMs }] },
      action: {
        type: "startWorkflow",
        workflowType: reconcilerWorkflow,
        taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
        args: [{ olderThanMs: options.olderThanMs, limit: 500, ...(options.applicationId ? { applicationId: options.applicationId } : {}) }],
      },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: options.intervalMs * 2 },
      state: { note: "Restarts messages accepted by the API whose workflow never started" },
    });
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw error;
  }
  return scheduleId;
}
