/**
 * The codes our own rules write to a message's `error_code` (a provider's refusals use its
 * normalised PermanentReason instead, src/providers/types.ts). Defined once: the two send paths,
 * the workflows and the reconciler all write these, and a client filtering `?error_code=` by a
 * documented code must find every message of that kind, single or campaign.
 */
export const FAILURE_CODES = {
  /** The application's allowance or credit ran out before the message was sent. */
  quotaExceeded: "quota_exceeded",
  /** The subscription was deleted or unsubscribed between accept and send. */
  subscriptionDisabled: "subscription_disabled",
  /** A channel we accept but cannot send yet. */
  invalidSubscriptionType: "invalid_subscription_type",
  /** Neither credentials nor the simulator for the platform. */
  providerNotConfigured: "provider_not_configured",
  /** Still unsent when AUTOMATA_PENDING_TIMEOUT ran out. */
  pendingTimeout: "pending_timeout",
  /** Sent, but no receipt from the device within the receipt window. */
  receiptTimeout: "receipt_timeout",
  /** Temporary failures until the retry policy gave up. */
  retriesExhausted: "retries_exhausted",
  /** A send attempt whose result never came back (its worker died); retried as a network failure. */
  attemptResultLost: "attempt_result_lost",
  /** The campaign batch workflow ended before sending the message. */
  batchAborted: "batch_aborted",
  /** The message workflow closed before the message was sent. */
  workflowClosed: "workflow_closed",
  /** ttl_seconds ran out before a send got through. */
  expired: "expired",
  /** The device token cannot be decrypted with this worker's key. */
  tokenUnreadable: "token_unreadable",
} as const;

/** The error_message of a `receipt_timeout`, whichever of the workflows or the reconciler wrote it. */
export const RECEIPT_TIMEOUT_MESSAGE = "no receipt from the device before the receipt timeout";

/** One of our own failure codes. */
export type FailureCode = (typeof FAILURE_CODES)[keyof typeof FAILURE_CODES];
