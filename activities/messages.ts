import { ApplicationFailure } from "@temporalio/activity";
import type { Knex } from "knex";
import type { Deps } from "../src/deps";
import { inTransaction } from "../src/db/transactions";
import { RECORD_OUTCOME_ATTEMPTS } from "../src/messages/delivery";
import { applyMessageTransition, closeConversionWindow, type MessageRow } from "../src/messages/transitions";
import { UNSENT_STATUSES, type MessageStatus } from "../src/messages/state-machine";
import { MESSAGE_EXPIRED, expiredBeforeSend, toPushMessage, type StoredPushOptions } from "../src/messages/push-options";
import { debitMessageQuota, refundMessageQuota } from "../src/quota/quota";
import { changeSubscriptionStatus } from "../src/subscriptions/repository";
import { openDeviceToken, TOKEN_UNREADABLE } from "../src/subscriptions/device-token";
import { ProviderNotConfiguredError, isPushSubscriptionType, usesApnsSandbox, type PermanentReason, type SendOutcome, type TemporaryClass } from "../src/providers";
import { afterCommit } from "../src/metrics/after-commit";
import { messageRetriesTotal, observeProviderOutcome } from "../src/metrics/registry";
import { FAILURE_CODES, RECEIPT_TIMEOUT_MESSAGE, type FailureCode } from "../src/messages/failure-codes";

/** What the workflow learns from one send attempt. */
export type SendStepResult =
  | { status: "successful"; providerMessageId: string }
  | { status: "failed"; errorCode: string }
  | { status: "errored"; retryClass: TemporaryClass; retryAfterMs?: number; errorCode: string }
  /**
   * The message was no longer pending: cancelled, or already sent (or errored) by an attempt whose
   * result the workflow never recorded.
   */
  | { status: Exclude<MessageStatus, "pending">; alreadyDecided: true };

/** Result of the quota step. */
export type QuotaStepResult = { proceed: true } | { proceed: false; status: MessageStatus };


/** Activities of the message workflow; each is idempotent so Temporal may retry it after a crash. */
export function createMessageActivities(deps: Deps) {
  const { db } = deps;

  async function lockMessage(trx: Knex.Transaction, messageId: string): Promise<MessageRow> {
    const message = await trx("messages").where("id", messageId).forUpdate().first<MessageRow | undefined>();
    if (!message) throw ApplicationFailure.nonRetryable(`message ${messageId} does not exist`, "MessageNotFound");
    return message;
  }

  /** Fails a message that the provider never accepted, and gives its quota back. */
  async function failUnsent(trx: Knex.Transaction, message: MessageRow, errorCode: FailureCode | PermanentReason, errorMessage: string, details: Record<string, unknown> = {}): Promise<void> {
    await applyMessageTransition(trx, {
      messageId: message.id,
      action: "fail",
      set: { error_code: errorCode, error_message: errorMessage, error_details: details },
      eventData: { error_code: errorCode, ...details },
    });
    await refundMessageQuota(trx, { applicationId: message.application_id, messageId: message.id });
  }

  /** Whether a message accepted at `createdAt` is past the pending timeout (config, as the reconciler reads it). */
  function pendingTooLong(createdAt: Date): boolean {
    return Date.now() - new Date(createdAt).getTime() > deps.config.AUTOMATA_PENDING_TIMEOUT;
  }

  /** Writes a provider's answer to a locked pending message: successful, failed (+ refund, subscription status) or errored. */
  async function recordSendOutcome(trx: Knex.Transaction, message: MessageRow, subscription: { id: string; token_hash: string }, providerName: string, outcome: SendOutcome): Promise<SendStepResult> {
    const messageId = message.id;
    const attempts = trx.raw("attempts + 1");
    if (outcome.kind === "success") {
      await applyMessageTransition(trx, {
        messageId,
        action: "send",
        set: { provider: providerName, provider_message_id: outcome.providerMessageId, attempts, error_code: null, error_message: null },
        eventData: { provider: providerName, provider_message_id: outcome.providerMessageId },
      });
      return { status: "successful" as const, providerMessageId: outcome.providerMessageId };
    }
    if (outcome.kind === "permanent") {
      await trx("messages").where("id", messageId).update({ attempts, provider: providerName });
      await failUnsent(trx, message, outcome.reason, outcome.detail, { provider_code: outcome.code });
      if (outcome.subscriptionStatus !== undefined) {
        await changeSubscriptionStatus(trx, {
          applicationId: message.application_id,
          subscriptionId: subscription.id,
          toStatus: outcome.subscriptionStatus,
          eventType: "delivery_failed",
          reason: outcome.code,
          source: "provider",
          data: { message_id: messageId },
          sentTokenHash: subscription.token_hash,
        });
      }
      return { status: "failed" as const, errorCode: outcome.reason };
    }
    await applyMessageTransition(trx, {
      messageId,
      action: "error",
      set: { provider: providerName, attempts, error_code: outcome.reason, error_message: `${outcome.class}: ${outcome.code}` },
      eventData: { class: outcome.class, code: outcome.code, retry_after_ms: outcome.retryAfterMs ?? null },
    });
    const retryClass = outcome.class;
    afterCommit(trx, () => messageRetriesTotal.inc({ class: retryClass }));
    return { status: "errored" as const, retryClass: outcome.class, retryAfterMs: outcome.retryAfterMs, errorCode: outcome.reason };
  }

  return {
    /**
     * Debits one message from the application's allowance (idempotent per message). Exhausted quota
     * fails the message with `quota_exceeded`; a message cancelled meanwhile is left alone.
     */
    async debitQuota(messageId: string): Promise<QuotaStepResult> {
      return db.transaction(async (trx) => {
        const message = await lockMessage(trx, messageId);
        if (!UNSENT_STATUSES.includes(message.status)) return { proceed: false, status: message.status };
        const debit = await debitMessageQuota(trx, { applicationId: message.application_id, messageId });
        if (debit.status === "exhausted") {
          await applyMessageTransition(trx, {
            messageId,
            action: "fail",
            set: { error_code: FAILURE_CODES.quotaExceeded, error_message: `${debit.period} quota exhausted`, error_details: debit },
            eventData: { error_code: FAILURE_CODES.quotaExceeded, period: debit.period },
          });
          return { proceed: false, status: "failed" as const };
        }
        return { proceed: true as const };
      });
    },

    /**
     * One delivery attempt. The message row stays locked while the provider is called, so a cancel
     * racing the send waits and then sees the outcome: a message is never both cancelled and sent.
     * The outcome is written in the same transaction (successful / failed + refund + subscription
     * status / errored); a crash before commit leaves it pending and the retried activity sends
     * again, which the device collapses: the message id is the APNs collapse id and the FCM
     * notification tag.
     */
    async sendMessage(messageId: string): Promise<SendStepResult> {
      return db.transaction(async (trx) => {
        const message = await lockMessage(trx, messageId);
        if (message.status !== "pending") return { status: message.status as Exclude<MessageStatus, "pending">, alreadyDecided: true as const };
        const subscription = message.subscription_id
          ? await trx("subscriptions").where({ id: message.subscription_id, application_id: message.application_id }).first()
          : undefined;
        if (!subscription || subscription.subscription_status <= 0) {
          await failUnsent(trx, message, FAILURE_CODES.subscriptionDisabled, "the subscription is gone or no longer subscribed", {
            subscription_status: subscription?.subscription_status ?? null,
          });
          return { status: "failed" as const, errorCode: FAILURE_CODES.subscriptionDisabled };
        }
        if (!isPushSubscriptionType(subscription.subscription_type) || !subscription.token_ciphertext) {
          await failUnsent(trx, message, FAILURE_CODES.invalidSubscriptionType, `${subscription.subscription_type} is not a sendable channel yet`);
          return { status: "failed" as const, errorCode: FAILURE_CODES.invalidSubscriptionType };
        }
        if (expiredBeforeSend(message.options as StoredPushOptions, message.created_at, message.attempts)) {
          await failUnsent(trx, message, MESSAGE_EXPIRED.code, MESSAGE_EXPIRED.message);
          return { status: "failed" as const, errorCode: MESSAGE_EXPIRED.code };
        }
        let outcome: SendOutcome;
        let providerName: string;
        try {
          const provider = await deps.push.providerFor(message.application_id, subscription.subscription_type, usesApnsSandbox(subscription.test_type), trx);
          providerName = provider.platform;
          const token = openDeviceToken(deps, subscription.token_ciphertext, subscription.application_id, { message_id: messageId, subscription_id: subscription.id });
          if (token === undefined) {
            await failUnsent(trx, message, TOKEN_UNREADABLE.code, TOKEN_UNREADABLE.message);
            return { status: "failed" as const, errorCode: TOKEN_UNREADABLE.code };
          }
          const started = process.hrtime.bigint();
          try {
            outcome = await provider.send(toPushMessage({ ...message, options: message.options as StoredPushOptions }, token));
          } catch (error) {
            // Adapters answer outcomes, so a throw is a bug or a crash in the client: still a provider error.
            observeProviderOutcome(providerName, { kind: "exception", reason: "exception" }, Number(process.hrtime.bigint() - started) / 1e9);
            throw error;
          }
          // The provider was called whether or not this transaction commits, so these count at once.
          observeProviderOutcome(providerName, outcome, Number(process.hrtime.bigint() - started) / 1e9);
          // Ids only: the token and the payload never reach logs.
          deps.logger.debug(
            { message_id: messageId, application_id: message.application_id, workflow_id: `message-${messageId}`, provider: providerName, outcome: outcome.kind, reason: outcome.kind === "success" ? undefined : outcome.reason },
            "provider answered",
          );
        } catch (error) {
          if (error instanceof ProviderNotConfiguredError) {
            await failUnsent(trx, message, FAILURE_CODES.providerNotConfigured, error.message);
            return { status: "failed" as const, errorCode: FAILURE_CODES.providerNotConfigured };
          }
          // Anything else (credentials that will not load, a client bug) is retried by Temporal, but
          // not past the pending timeout: a message must end somewhere, not stay pending for ever.
          if (pendingTooLong(message.created_at)) {
            deps.logger.error({ err: error, message_id: messageId, application_id: message.application_id }, "sending kept failing past the pending timeout");
            await failUnsent(trx, message, FAILURE_CODES.pendingTimeout, `sending kept failing until the pending timeout (${error instanceof Error ? error.name : typeof error}; details in the worker log)`);
            return { status: "failed" as const, errorCode: FAILURE_CODES.pendingTimeout };
          }
          throw error;
        }
        // The provider has answered: a rollback now would send the push again on the retry. So the
        // outcome is recorded in a savepoint, re-run if PostgreSQL picks it as a deadlock victim
        // (its counter triggers and a campaign chunk's can meet in another order).
        return inTransaction(trx, (savepoint) => recordSendOutcome(savepoint, message, subscription, providerName, outcome), RECORD_OUTCOME_ATTEMPTS);
      });
    },

    /** errored → pending before the next attempt; answers the status the message is actually in. */
    async retryMessage(messageId: string): Promise<MessageStatus> {
      const result = await applyMessageTransition(db, { messageId, action: "retry" });
      if (result.outcome === "not_found") throw ApplicationFailure.nonRetryable(`message ${messageId} does not exist`, "MessageNotFound");
      return result.message.status;
    },

    /** Gives up on a message that was never accepted (retries exhausted, pending too long). */
    async failMessage(messageId: string, errorCode: FailureCode, errorMessage: string): Promise<MessageStatus> {
      return db.transaction(async (trx) => {
        const message = await lockMessage(trx, messageId);
        if (!UNSENT_STATUSES.includes(message.status)) return message.status;
        await failUnsent(trx, message, errorCode, errorMessage);
        return "failed" as const;
      });
    },

    /** successful → failed(receipt_timeout); a receipt that won the race leaves its status standing. */
    async expireReceipt(messageId: string): Promise<MessageStatus> {
      const result = await applyMessageTransition(db, {
        messageId,
        action: "fail",
        set: { error_code: FAILURE_CODES.receiptTimeout, error_message: RECEIPT_TIMEOUT_MESSAGE },
        eventData: { error_code: FAILURE_CODES.receiptTimeout },
      });
      if (result.outcome === "not_found") throw ApplicationFailure.nonRetryable(`message ${messageId} does not exist`, "MessageNotFound");
      return result.message.status;
    },

    /** Returns the quota of a message cancelled before sending (no-op when nothing was debited). */
    async refundQuota(messageId: string): Promise<void> {
      const message = await db("messages").where("id", messageId).first<MessageRow | undefined>("application_id", "status");
      if (!message || message.status !== "cancelled") return;
      await refundMessageQuota(db, { applicationId: message.application_id, messageId });
    },

    /**
     * The conversion window ended for the workflow: closes it in PostgreSQL too (under the row lock
     * conversions take, so none can commit after this), and answers the status that stands.
     */
    async closeConversionWindow(messageId: string): Promise<MessageStatus> {
      const status = await closeConversionWindow(db, messageId);
      if (status === undefined) throw ApplicationFailure.nonRetryable(`message ${messageId} does not exist`, "MessageNotFound");
      return status;
    },

    /** Current status from PostgreSQL, the source of truth. */
    async readMessageStatus(messageId: string): Promise<MessageStatus> {
      const message = await db("messages").where("id", messageId).first<{ status: MessageStatus } | undefined>("status");
      if (!message) throw ApplicationFailure.nonRetryable(`message ${messageId} does not exist`, "MessageNotFound");
      return message.status;
    },
  };
}
