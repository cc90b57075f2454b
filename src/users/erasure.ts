import type { Deps } from "../deps";
import { ApplicationIdKey } from "../../temporal/search-attributes";
import { userErasureWorkflow, userErasureWorkflowId } from "../../workflows/user-erasure";
import { recordErasureWorkflow, type ErasureRequestRow } from "./repository";

/**
 * Starts (or attaches to) the erasure workflow of a request. The workflow id is derived from the
 * request id and an already running workflow is reused, so calling this again for the same request
 * (a retried DELETE, or the reconciler) never runs a second erasure in parallel; a previous run
 * that failed or was terminated is started afresh. Only the request id goes to Temporal: its history
 * must not hold the user's identifiers.
 */
export async function startErasureWorkflow(deps: Deps, request: Pick<ErasureRequestRow, "id" | "application_id">): Promise<string> {
  const workflowId = userErasureWorkflowId(request.id);
  await deps.temporal.workflow.start(userErasureWorkflow, {
    taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
    workflowId,
    args: [request.id],
    workflowIdConflictPolicy: "USE_EXISTING",
    typedSearchAttributes: [{ key: ApplicationIdKey, value: request.application_id }],
  });
  await recordErasureWorkflow(deps.db, request.id, workflowId);
  return workflowId;
}
