import { condition, defineQuery, defineSignal, patched, proxyLocalActivities, setHandler, upsertSearchAttributes, workflowInfo } from "@temporalio/workflow";
import type { createMessageActivities } from "../activities/messages";
import type { MessageStatus } from "../src/messages/state-machine";
import { nextRetryDelay, RETRY_AFTER_FLOOR_PATCH, RETRY_JITTER_PATCH, type RetryClass } from "../src/messages/retry-policy";
import { MessageStatusKey } from "../temporal/search-attributes";
import { FAILURE_CODES } from "../src/messages/failure-codes";
import { ACTIVITY_RETRY } from "./activity-retry";

// Local activities: each step is a short database transaction (the send adds one provider call
// bounded at 15 s), so running them inside the workflow task saves the server the schedule/start/
// complete round trips of regular activities; a happy-path message is accepted, debited and sent in
// a single workflow task. A worker that dies mid-step fails the workflow task and another worker
// re-runs it; the steps are idempotent conditional updates, so a re-run changes nothing twice.
const activities = proxyLocalActivities<ReturnType<typeof createMessageActivities>>({
  startToCloseTimeout: "30 seconds",
  retry: ACTIVITY_RETRY,
});

/** Durations the workflow runs with; fixed at acceptance so a replay never depends on config. */
export interface MessageTiming {
  receiptTimeoutMs: number;
  conversionWindowMs: number;
  pendingTimeoutMs: number;
  retryScale: number;
}

/** Input of {@link messageWorkflow}. */
export interface MessageWorkflowInput {
  messageId: string;
  applicationId: string;
  timing: MessageTiming;
  /** When the API accepted the message (epoch ms); the pending timeout counts from here. */
  acceptedAt?: number;
}

/** The SDK reported the device received the message (the API already updated PostgreSQL). */
export const receivedSignal = defineSignal("received");
/** The SDK reported a conversion (the API already updated PostgreSQL). */
export const convertedSignal = defineSignal("converted");
/** The message was cancelled through the API (PostgreSQL already says so). */
export const cancelledSignal = defineSignal("cancelled");
/** The status the workflow last observed. */
export const statusQuery = defineQuery<MessageStatus>("status");

// Histories recorded before a re-run could resume a message another run had sent replay without it.
const RESUME_PATCH = "resume-after-lost-task";
// Histories recorded before a receipt could arrive for an errored message end at the retry, as they did.
const DELIVERED_WHILE_ERRORED_PATCH = "delivered-while-errored";

/** Workflow id of a message: its business id, so starting it twice is impossible. */
export function messageWorkflowId(messageId: string): string {
  return `message-${messageId}`;
}

/**
 * One message's lifecycle (SEQ-002/SEQ-003): debit quota, send with per-class retries as durable
 * timers, then wait for the device's receipt and for a conversion. PostgreSQL holds the state;
 * every change goes through a conditional transition in an activity, and the workflow mirrors it
 * in the MessageStatus search attribute.
 */
export async function messageWorkflow(input: MessageWorkflowInput): Promise<MessageStatus> {
  const { messageId, timing } = input;
  let status = "pending" as MessageStatus;
  let receiptSignalled = false;
  let conversionSignalled = false;
  let cancelSignalled = false;
  setHandler(receivedSignal, () => void (receiptSignalled = true));
  setHandler(convertedSignal, () => void (conversionSignalled = true));
  setHandler(cancelledSignal, () => void (cancelSignalled = true));
  setHandler(statusQuery, () => status);

  const observe = (next: MessageStatus): MessageStatus => {
    if (next !== status) {
      status = next;
      upsertSearchAttributes([{ key: MessageStatusKey, value: next }]);
    }
    return status;
  };
  const finishCancelled = async (): Promise<MessageStatus> => {
    await activities.refundQuota(messageId);
    return observe("cancelled");
  };

  // Histories from before acceptedAt existed count from the workflow start.
  const acceptedAt = input.acceptedAt ?? workflowInfo().startTime.getTime();
  if (Date.now() - acceptedAt > timing.pendingTimeoutMs) {
    // Started late (e.g. by the reconciler after a long Temporal outage): too old to send now.
    return observe(await activities.failMessage(messageId, FAILURE_CODES.pendingTimeout, "the message waited longer than the pending timeout before its first attempt"));
  }
  const quota = await activities.debitQuota(messageId);
  // Debit and send run in one workflow task, so a worker that dies after the send committed but
  // before Temporal recorded the task makes the next worker re-run both against a row that has moved
  // on. A sent message then still owes its receipt wait; ending here left it `successful` forever.
  const alreadySent = !quota.proceed && (quota.status === "successful" || quota.status === "received") && patched(RESUME_PATCH);
  if (!quota.proceed && !alreadySent) return quota.status === "cancelled" ? finishCancelled() : observe(quota.status);
  if (alreadySent) observe(quota.status);

  const retriesByClass: Record<RetryClass, number> = { network: 0, provider_outage: 0, rate_limited: 0 };
  while (!alreadySent) {
    let attempt = await activities.sendMessage(messageId);
    if ("alreadyDecided" in attempt) {
      if (attempt.status === "cancelled") return finishCancelled();
      // The same lost task after a temporary failure (or an attempt that outlived its timeout and
      // committed anyway): the failure's class is gone with it, so it is retried as a network one.
      if (attempt.status === "errored" && patched(RESUME_PATCH)) {
        attempt = { status: "errored", retryClass: "network", errorCode: FAILURE_CODES.attemptResultLost };
      } else {
        observe(attempt.status);
        break;
      }
    }
    observe(attempt.status);
    if (attempt.status === "successful") break;
    if (attempt.status === "failed") return status;

    retriesByClass[attempt.retryClass] += 1;
    // Math.random() is the workflow's seeded one, so a replay draws the same jitter.
    const jitter = patched(RETRY_JITTER_PATCH) ? Math.random() : 0;
    const delay = nextRetryDelay(attempt.retryClass, retriesByClass[attempt.retryClass], timing.retryScale, attempt.retryAfterMs, jitter, !patched(RETRY_AFTER_FLOOR_PATCH));
    const pendingFor = Date.now() - acceptedAt;
    if (delay === undefined || pendingFor + delay > timing.pendingTimeoutMs) {
      const reason = delay === undefined ? FAILURE_CODES.retriesExhausted : FAILURE_CODES.pendingTimeout;
      return observe(await activities.failMessage(messageId, reason, `${attempt.retryClass} failures: ${attempt.errorCode}`));
    }
    // Sleep until the retry is due, waking early if the message is cancelled meanwhile.
    if (await condition(() => cancelSignalled, delay)) {
      const current = await activities.readMessageStatus(messageId);
      if (current === "cancelled") return finishCancelled();
    }
    const resumed = await activities.retryMessage(messageId);
    if (resumed === "cancelled") return finishCancelled();
    // A receipt during the backoff proved the errored attempt reached the device (the API applied
    // send, then receive): nothing to send again, but the receipt and conversion waits still apply.
    if ((resumed === "successful" || resumed === "received") && patched(DELIVERED_WHILE_ERRORED_PATCH)) {
      observe(resumed);
      break;
    }
    if (resumed !== "pending") return observe(resumed);
    observe("pending");
  }

  if (status === "successful") {
    const receipt = await condition(() => receiptSignalled || conversionSignalled, timing.receiptTimeoutMs);
    observe(receipt ? await activities.readMessageStatus(messageId) : await activities.expireReceipt(messageId));
  }
  if (status === "received") {
    if (await condition(() => conversionSignalled, timing.conversionWindowMs)) observe(await activities.readMessageStatus(messageId));
    // The window ended here: close it in PostgreSQL as well, so a conversion that raced the timer
    // (or whose signal is late) is either already committed and observed, or refused from now on.
    // Histories recorded before this step replay without it.
    else if (patched("close-conversion-window")) observe(await activities.closeConversionWindow(messageId));
  }
  return status;
}
