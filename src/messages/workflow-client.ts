import { WorkflowExecutionAlreadyStartedError, WorkflowIdConflictPolicy, WorkflowIdReusePolicy, WorkflowNotFoundError } from "@temporalio/client";
import pLimit from "p-limit";
import type { Deps } from "../deps";
import { messageWorkflow, messageWorkflowId, type MessageTiming, type cancelledSignal, type convertedSignal, type receivedSignal } from "../../workflows/message";
import { withinApiDeadline } from "../http/temporal-deadline";
import { ApplicationIdKey, MessageIdKey, MessageStatusKey, SubscriptionIdKey } from "../../temporal/search-attributes";

/** Durations from configuration, handed to each workflow at start so its history is self-contained. */
export function messageTiming(deps: Pick<Deps, "config">): MessageTiming {
  return {
    receiptTimeoutMs: deps.config.AUTOMATA_RECEIPT_TIMEOUT,
    conversionWindowMs: deps.config.AUTOMATA_CONVERSION_WINDOW,
    pendingTimeoutMs: deps.config.AUTOMATA_PENDING_TIMEOUT,
    retryScale: deps.config.AUTOMATA_RETRY_SCALE,
  };
}

/** The fields of a message row needed to start its workflow. */
export interface StartableMessage {
  id: string;
  application_id: string;
  subscription_id: string | null;
  /** Acceptance time; the pending timeout counts from here even if the workflow starts late. */
  created_at?: Date;
}

/**
 * Starts (or finds) each message's workflow. The workflow id is the message's business id and the
 * conflict policy is USE_EXISTING, so repeating a start (a retried request, an Idempotency-Key
 * replay, the reconciler) never creates a second execution, and a closed one is never run again:
 * an operator's terminate stands (the reconciler fails such a message and refunds it).
 */
export async function startMessageWorkflows(deps: Deps, messages: readonly StartableMessage[]): Promise<void> {
  const timing = messageTiming(deps);
  // A send to a user's thousand devices would otherwise open a thousand start calls at once.
  const limit = pLimit(CONCURRENT_STARTS);
  await Promise.all(messages.map((message) => limit(() => startMessageWorkflow(deps, message, timing))));
}

/** Workflow starts one call to {@link startMessageWorkflows} keeps in flight. */
const CONCURRENT_STARTS = 32;

async function startMessageWorkflow(deps: Deps, message: StartableMessage, timing: MessageTiming): Promise<void> {
  try {
    await deps.temporal.workflow.start(messageWorkflow, {
      workflowId: messageWorkflowId(message.id),
      taskQueue: deps.config.TEMPORAL_TASK_QUEUE,
      args: [{ messageId: message.id, applicationId: message.application_id, timing, acceptedAt: message.created_at ? new Date(message.created_at).getTime() : Date.now() }],
      workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
      workflowIdReusePolicy: WorkflowIdReusePolicy.REJECT_DUPLICATE,
      typedSearchAttributes: [
        { key: ApplicationIdKey, value: message.application_id },
        { key: MessageIdKey, value: message.id },
        { key: MessageStatusKey, value: "pending" },
        ...(message.subscription_id ? [{ key: SubscriptionIdKey, value: message.subscription_id }] : []),
      ],
    });
  } catch (error) {
    // Its workflow ran and closed already: there is nothing to start.
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
  }
}

/**
 * Tells a message's workflow that PostgreSQL changed under it (receipt, conversion, cancel) so it
 * can finish early. Best effort: the database is already right, and a workflow that is gone (or
 * not started yet) re-reads the database when it next looks.
 */
export async function signalMessageWorkflow(
  deps: Deps,
  messageId: string,
  signal: typeof receivedSignal | typeof convertedSignal | typeof cancelledSignal,
): Promise<void> {
  try {
    await withinApiDeadline(deps, () => deps.temporal.workflow.getHandle(messageWorkflowId(messageId)).signal(signal));
  } catch (error) {
    if (error instanceof WorkflowNotFoundError) return;
    deps.logger.warn({ err: error, message_id: messageId, signal: signal.name }, "could not signal the message workflow; it will read PostgreSQL itself");
  }
}
