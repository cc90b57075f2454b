import { isDeepStrictEqual } from "node:util";
import { ScheduleAlreadyRunning, ScheduleNotFoundError, ScheduleOverlapPolicy, type ScheduleDescription } from "@temporalio/client";
import type { Deps } from "../deps";
import { reconcilerWorkflow, RECONCILER_SCHEDULE_ID } from "../../workflows/reconciler";
import { RECONCILER_PASS_BUDGET_MS } from "../../activities/reconciler";

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
 * Creates the Temporal Schedule that runs the reconciler (one per task queue), so every worker can
 * call this at start. A schedule that already exists takes this worker's interval and arguments
 * (AUTOMATA_RECONCILE_INTERVAL / _AFTER changed since it was created would otherwise never apply)
 * and keeps its state: an operator's pause stays. One whose settings already match is not written:
 * the SDK's update writes back the whole state it read, so every worker of a deploy rewriting it
 * could undo a pause or resume an operator made in between.
 */
export async function ensureReconcilerSchedule(deps: Deps, options: ReconcilerScheduleOptions): Promise<string> {
  const scheduleId = `${RECONCILER_SCHEDULE_ID}-${deps.config.TEMPORAL_TASK_QUEUE}`;
  const settings = {
    spec: { intervals: [{ every: options.intervalMs }] },
    action: {
      type: "startWorkflow" as const,
      workflowType: reconcilerWorkflow,
      taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
      // A pass pages on for at most three quarters of the interval, so it is over before the next.
      args: [{ olderThanMs: options.olderThanMs, limit: 500, budgetMs: Math.min(RECONCILER_PASS_BUDGET_MS, Math.floor(options.intervalMs * 0.75)), ...(options.applicationId ? { applicationId: options.applicationId } : {}) }] as Parameters<typeof reconcilerWorkflow>,
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: options.intervalMs * 2 },
  };
  try {
    await deps.temporal.schedule.create({ scheduleId, ...settings, state: { note: "Restarts messages accepted by the API whose workflow never started" } });
  } catch (error) {
    if (!(error instanceof ScheduleAlreadyRunning)) throw error;
    const handle = deps.temporal.schedule.getHandle(scheduleId);
    if (!reconcilerScheduleDiffers(await handle.describe(), settings)) return scheduleId;
    await handle.update((current) => ({ ...settings, state: current.state }));
  }
  return scheduleId;
}

/** Whether a reconciler schedule as Temporal describes it runs otherwise than `settings` say. */
export function reconcilerScheduleDiffers(
  current: Pick<ScheduleDescription, "spec" | "action" | "policies">,
  settings: { spec: { intervals: Array<{ every: number }> }; action: { workflowType: unknown; taskQueue: string; args: unknown[] }; policies: { overlap: ScheduleOverlapPolicy; catchupWindow: number } },
): boolean {
  const intervals = (current.spec.intervals ?? []).map((interval) => ({ every: Number(interval.every), offset: Number(interval.offset ?? 0) }));
  const wanted = settings.spec.intervals.map((interval) => ({ every: interval.every, offset: 0 }));
  const action = current.action.type === "startWorkflow" ? current.action : undefined;
  const workflowType = typeof settings.action.workflowType === "function" ? settings.action.workflowType.name : settings.action.workflowType;
  return (
    !isDeepStrictEqual(intervals, wanted) ||
    (current.spec.calendars ?? []).length > 0 ||
    action === undefined ||
    action.workflowType !== workflowType ||
    action.taskQueue !== settings.action.taskQueue ||
    !isDeepStrictEqual(action.args ?? [], settings.action.args) ||
    current.policies.overlap !== settings.policies.overlap ||
    Number(current.policies.catchupWindow) !== settings.policies.catchupWindow
  );
}

/** How often a worker checks that the reconciler's schedule still exists. */
export const RECONCILER_SCHEDULE_CHECK_MS = 5 * 60_000;

/**
 * Recreates the reconciler's schedule whenever a check finds it gone (an operator cleaning up
 * schedules in the UI deleted it): otherwise nothing would restart the work a Temporal outage left
 * without a workflow until some worker happened to restart. A paused schedule is left paused.
 * Answers the function that stops the checks.
 */
export function keepReconcilerSchedule(deps: Deps, options: ReconcilerScheduleOptions, everyMs = RECONCILER_SCHEDULE_CHECK_MS): () => void {
  const scheduleId = `${RECONCILER_SCHEDULE_ID}-${deps.config.TEMPORAL_TASK_QUEUE}`;
  let checking = false;
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    void deps.temporal.schedule
      .getHandle(scheduleId)
      .describe()
      .catch(async (error: unknown) => {
        if (!(error instanceof ScheduleNotFoundError)) throw error;
        await ensureReconcilerSchedule(deps, options);
        deps.logger.warn({ schedule_id: scheduleId }, "the reconciler's schedule was gone; recreated it");
      })
      // Temporal unreachable: the next check tries again.
      .catch((error: unknown) => deps.logger.warn({ err: error, schedule_id: scheduleId }, "could not check the reconciler's schedule"))
      .finally(() => {
        checking = false;
      });
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
