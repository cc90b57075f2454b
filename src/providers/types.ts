/**
 * The push adapter contract (COMP-002 §2) shared by every provider. Providers never throw for
 * delivery problems: every attempt ends in a {@link SendOutcome} so the workflow, not the adapter,
 * decides what to retry and what to write back to the subscription (REF-002).
 */

/** Subscription types that reach a push provider (names match the `subscription_type` column). */
export type PushSubscriptionType = "iOSPush" | "AndroidPush";

/** The subscription types that can be sent to now; every send path checks against this one list. */
export const PUSH_SUBSCRIPTION_TYPES = ["iOSPush", "AndroidPush"] as const satisfies readonly PushSubscriptionType[];

/** True for a subscription type a push provider can deliver to. */
export function isPushSubscriptionType(value: string): value is PushSubscriptionType {
  return (PUSH_SUBSCRIPTION_TYPES as readonly string[]).includes(value);
}

/** APNs interruption levels (iOS 15+); FCM ignores them. */
export type InterruptionLevel = "passive" | "active" | "time-sensitive" | "critical";

/** Delivery priority: `high` → APNs 10 / FCM HIGH, `normal` → APNs 5 / FCM NORMAL. */
export type PushPriority = "high" | "normal";

/** A custom data value; FCM receives every value as a string (objects JSON-encoded). */
export type PushDataValue = string | number | boolean | object;

/** One rendered push for one device token — templates are already applied by the time it gets here. */
export interface PushMessage {
  /** Our message id; sent as `automata_message_id` and used as the APNs collapse id so a redelivery replaces itself. */
  messageId: string;
  /** The plain (decrypted) device token. */
  token: string;
  title?: string;
  body?: string;
  /** Custom key/values: top-level keys of the APNs payload, FCM `data` (stringified). */
  data?: Record<string, PushDataValue>;
  badge?: number;
  sound?: string;
  category?: string;
  threadId?: string;
  mutableContent?: boolean;
  /** Rich image: FCM `notification.imageUrl`; APNs payload key `image_url` for the service extension. */
  imageUrl?: string;
  interruptionLevel?: InterruptionLevel;
  priority?: PushPriority;
  /**
   * Absolute expiry as unix epoch SECONDS (APNs `apns-expiration` semantics; 0 = deliver now or
   * drop). Absolute rather than a TTL so a retry an hour later does not extend the message's life;
   * FCM gets `ttl = max(0, expiration - now)` computed at send time.
   */
  expiration?: number;
  /** FCM `android.collapseKey` (APNs collapses on messageId instead). */
  collapseKey?: string;
  /** FCM `android.notification.clickAction`. */
  clickAction?: string;
  /** FCM `android.notification.channelId`. */
  androidChannelId?: string;
}

/** Validation issue codes; the same names as the REF-001 API error codes so the API can surface them as-is. */
export type ValidationIssueCode = "message_too_large" | "invalid_message_content";

/** One reason a message cannot be sent; `field` points at the offending PushMessage property. */
export interface ValidationIssue {
  code: ValidationIssueCode;
  field: string;
  message: string;
}

/** Normalised reasons for a permanent failure; the workflow switches on these, never on provider strings. */
export type PermanentReason =
  | "invalid_token"
  | "unregistered"
  | "token_topic_mismatch"
  | "sender_id_mismatch"
  | "provider_auth_failed"
  | "provider_config_invalid"
  | "message_too_large"
  | "invalid_message_content"
  | "unclassified_error";

/** Why a failure is worth retrying later. */
export type TemporaryClass = "network" | "provider_outage" | "rate_limited";

/** Provider accepted the push. */
export interface SuccessOutcome {
  kind: "success";
  /** APNs `apns-id` or FCM `projects/<p>/messages/<id>`. */
  providerMessageId: string;
}

/** Retrying cannot help. */
export interface PermanentOutcome {
  kind: "permanent";
  /** Normalised reason (stable vocabulary). */
  reason: PermanentReason;
  /** Raw provider code, e.g. `BadDeviceToken`, `messaging/invalid-argument`, or `validation`. */
  code: string;
  /** REF-002 status to write to the subscription; undefined = leave the subscription alone. */
  subscriptionStatus?: number;
  /** Human-readable detail for logs and the message record. */
  detail: string;
}

/** Retrying later may succeed. */
export interface TemporaryOutcome {
  kind: "temporary";
  class: TemporaryClass;
  /** Server-requested wait (Retry-After), when the provider gave one. */
  retryAfterMs?: number;
  /** Normalised snake_case reason, e.g. `service_unavailable`, `socket_error`. */
  reason: string;
  /** Raw provider or Node error code. */
  code: string;
}

/** Any failed attempt. */
export type FailureOutcome = PermanentOutcome | TemporaryOutcome;

/** The result of one delivery attempt. */
export type SendOutcome = SuccessOutcome | FailureOutcome;

/**
 * A batch's message that was never handed to a connection: the batch was told to stop while it
 * waited for one. Nothing reached the provider, so the message is still to be sent.
 */
export interface NotSentOutcome {
  kind: "not_sent";
}

/** What {@link PushProvider.sendBatch} answers per message. */
export type BatchOutcome = SendOutcome | NotSentOutcome;

/** How a batch may be stopped part-way. */
export interface SendBatchOptions {
  /**
   * Once aborted, messages still waiting for a connection are not sent (answered `not_sent`);
   * those already handed to a connection finish, since aborting them could lose a push the provider
   * accepted. A worker shutting down stops a campaign chunk this way.
   */
  stop?: AbortSignal;
}

/** The outcome of a message left unsent by a stopped batch. */
export const NOT_SENT: NotSentOutcome = { kind: "not_sent" };

/** A push provider bound to one application credential; instances own connection pools, so reuse them. */
export interface PushProvider {
  /** Which wire protocol this provider speaks. */
  readonly platform: "apns" | "fcm";
  /** How its connection pool is used right now (the provider pool gauges). */
  poolUsage(): PoolUsage;
  /** Pure check against this provider's limits; an empty array means sendable. */
  validate(message: PushMessage): ValidationIssue[];
  /** One attempt, no retries; never rejects. Invalid messages come back as permanent outcomes without a network call. */
  send(message: PushMessage): Promise<SendOutcome>;
  /** Many attempts concurrently; never rejects; outcome i belongs to message i (`not_sent` only after `options.stop`). */
  sendBatch(messages: readonly PushMessage[], options?: SendBatchOptions): Promise<BatchOutcome[]>;
  /** Releases connections; later sends answer a temporary `provider_closed` outcome. */
  close(): Promise<void>;
}

/**
 * A provider's connection pool at one moment. Requests queued for long mean the pool, not the
 * provider, limits sending (raise AUTOMATA_FCM_CONNECTIONS for FCM).
 */
export interface PoolUsage {
  /** Open connections. */
  connections: number;
  /** Requests sent and not yet answered. */
  inFlight: number;
  /** Requests waiting for a connection (or a stream). */
  queued: number;
}

/** Where to send instead of Apple/Google (the simulator): origin plus the CA that signed its certificate. */
export interface ProviderEndpoint {
  /** e.g. `https://localhost:8443` */
  url: string;
  /** PEM of the CA (or self-signed certificate) to trust for that origin. */
  ca: string;
}
