/**
 * The message state machine (SEQ-003 plus `cancelled`), defined once. The API, activities and
 * workflows all import it; nothing else decides which status may follow which.
 */

/** Every status a message can have. */
export const MESSAGE_STATUSES = ["pending", "successful", "received", "converted", "failed", "errored", "cancelled"] as const;

/** A message status. */
export type MessageStatus = (typeof MESSAGE_STATUSES)[number];

/** Statuses after which nothing more can happen to a message. */
export const TERMINAL_STATUSES: readonly MessageStatus[] = ["converted", "failed", "cancelled"];

/** Column that records when a message entered a status (SEQ-003 §4); `errored` has none. */
export type TimestampColumn = "sent_at" | "received_at" | "converted_at" | "failed_at" | "cancelled_at";

/** A named transition: where it may start, where it ends, what it stamps and which event it logs. */
export interface TransitionRule {
  from: readonly MessageStatus[];
  to: MessageStatus;
  timestamp: TimestampColumn | null;
  event: string;
  /** Statuses at which repeating this action is a harmless no-op (idempotent SDK calls). */
  alreadyDoneAt: readonly MessageStatus[];
}

/** SEQ-003 §3 transitions, plus cancel (only before the provider accepted the message). */
export const TRANSITIONS = {
  send: { from: ["pending", "errored"], to: "successful", timestamp: "sent_at", event: "sent", alreadyDoneAt: [] },
  error: { from: ["pending"], to: "errored", timestamp: null, event: "errored", alreadyDoneAt: [] },
  retry: { from: ["errored"], to: "pending", timestamp: null, event: "retried", alreadyDoneAt: [] },
  fail: { from: ["pending", "errored", "successful"], to: "failed", timestamp: "failed_at", event: "failed", alreadyDoneAt: [] },
  receive: { from: ["successful"], to: "received", timestamp: "received_at", event: "received", alreadyDoneAt: ["received", "converted"] },
  convert: { from: ["received"], to: "converted", timestamp: "converted_at", event: "converted", alreadyDoneAt: ["converted"] },
  cancel: { from: ["pending", "errored"], to: "cancelled", timestamp: "cancelled_at", event: "cancelled", alreadyDoneAt: ["cancelled"] },
} as const satisfies Record<string, TransitionRule>;

/** Statuses of a message no provider has accepted yet: it still waits to go out. */
export const UNSENT_STATUSES: readonly MessageStatus[] = TRANSITIONS.send.from;

/** The name of a transition in {@link TRANSITIONS}. */
export type TransitionName = keyof typeof TRANSITIONS;

/** What applying an action to a message in a given status would do. */
export type TransitionDecision = "apply" | "noop" | "illegal";

/** Decides whether `action` may be applied to a message currently in `current`. */
export function decideTransition(action: TransitionName, current: MessageStatus): TransitionDecision {
  const rule: TransitionRule = TRANSITIONS[action];
  if (rule.from.includes(current)) return "apply";
  if (rule.alreadyDoneAt.includes(current)) return "noop";
  return "illegal";
}

/** True when a message in this status will not change any more. */
export function isTerminal(status: MessageStatus): boolean {
  return TERMINAL_STATUSES.includes(status);
}

/** Narrows an arbitrary string to a message status. */
export function isMessageStatus(value: string): value is MessageStatus {
  return (MESSAGE_STATUSES as readonly string[]).includes(value);
}

/**
 * The transitions an SDK action needs from the current status. A conversion reported for a message
 * whose receipt never arrived (iOS without a notification service extension sends no receipt)
 * implies the receipt, so it applies `receive` then `convert`. A receipt or conversion for an
 * `errored` or `pending` message proves an attempt reached the device although its answer was lost
 * (a provider that accepted the push, then timed out; a sender whose commit was lost with its
 * worker): it applies `send` first, so the device's report is kept and the sender, which only sends
 * pending messages, finds nothing left to send again.
 */
export function planSdkAction(action: "receive" | "convert", current: MessageStatus): TransitionName[] | "noop" | "illegal" {
  if (current === "errored" || current === "pending") return action === "receive" ? ["send", "receive"] : ["send", "receive", "convert"];
  if (action === "convert" && current === "successful") return ["receive", "convert"];
  const decision = decideTransition(action, current);
  return decision === "apply" ? [action] : decision;
}
