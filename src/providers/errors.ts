/**
 * The one place provider failures become {@link SendOutcome}s (COMP-002 map_error, REF-002 §10).
 * Everything is table-driven and pure so tests, docs and the workflow share the same tables.
 */
import type { FailureOutcome, PermanentReason, TemporaryClass } from "./types";

/** A permanent rule: never retry; optionally write a REF-002 status to the subscription. */
export interface PermanentRule {
  kind: "permanent";
  reason: PermanentReason;
  subscriptionStatus?: number;
}

/** A temporary rule: retry later, classed so the workflow can pick a backoff. */
export interface TemporaryRule {
  kind: "temporary";
  class: TemporaryClass;
  reason: string;
}

/** One row of a classification table. */
export type OutcomeRule = PermanentRule | TemporaryRule;

/** REF-002 §3/§10 subscription status codes the push providers can produce. */
export const SUBSCRIPTION_STATUS = {
  /** REF-002 §10.1 MISSING_REGISTRATION → -3. */
  MISSING_REGISTRATION: -3,
  /** REF-002 §10.1 INVALID_REGISTRATION → -4 (FCM token malformed). */
  INVALID_REGISTRATION: -4,
  /** REF-002 §3.1 SENDER_ID_MISMATCH → -6. */
  SENDER_ID_MISMATCH: -6,
  /** REF-002 §3.3 PUSH_UNSUBSCRIBED → -10 (FCM UNREGISTERED, APNs BadDeviceToken/Unregistered). */
  PUSH_UNSUBSCRIBED: -10,
  /** REF-002 §10.2 DeviceTokenNotForTopic → -14 (APNS_CONNECTION_ERROR range). */
  APNS_TOKEN_NOT_FOR_TOPIC: -14,
} as const;

const permanent = (reason: PermanentReason, subscriptionStatus?: number): PermanentRule =>
  subscriptionStatus === undefined ? { kind: "permanent", reason } : { kind: "permanent", reason, subscriptionStatus };
const temporary = (cls: TemporaryClass, reason: string): TemporaryRule => ({ kind: "temporary", class: cls, reason });

const AUTH = permanent("provider_auth_failed");
const CONFIG = permanent("provider_config_invalid");
const CONTENT = permanent("invalid_message_content");
const OUTAGE = temporary("provider_outage", "service_unavailable");
const RATE = temporary("rate_limited", "rate_limited");

/** APNs `reason` → rule (Apple "Handling notification responses from APNs"). */
export const APNS_REASON_RULES: Readonly<Record<string, OutcomeRule>> = {
  BadDeviceToken: permanent("invalid_token", SUBSCRIPTION_STATUS.PUSH_UNSUBSCRIBED),
  Unregistered: permanent("unregistered", SUBSCRIPTION_STATUS.PUSH_UNSUBSCRIBED),
  ExpiredToken: permanent("unregistered", SUBSCRIPTION_STATUS.PUSH_UNSUBSCRIBED),
  DeviceTokenNotForTopic: permanent("token_topic_mismatch", SUBSCRIPTION_STATUS.APNS_TOKEN_NOT_FOR_TOPIC),
  // An empty token is our bug, not the device's: fail the message, keep the subscription.
  MissingDeviceToken: permanent("invalid_token"),

  BadTopic: CONFIG,
  TopicDisallowed: CONFIG,
  MissingTopic: CONFIG,
  BadPath: CONFIG,
  MethodNotAllowed: CONFIG,

  BadCollapseId: CONTENT,
  BadExpirationDate: CONTENT,
  BadMessageId: CONTENT,
  BadPriority: CONTENT,
  DuplicateHeaders: CONTENT,
  InvalidPushType: CONTENT,
  PayloadEmpty: CONTENT,
  PayloadTooLarge: permanent("message_too_large"),

  // The key/team/certificate is wrong for every device of the app; retrying or unsubscribing won't help.
  InvalidProviderToken: AUTH,
  // Our JWT is over an hour old: apns2 drops its cached token on this reason and signs a new one on the
  // next send, so a quick retry goes through (Apple: "generate a new token"). Failing the message would
  // lose it for a problem that is already fixed, and a persistent cause (clock skew) still ends after
  // the network schedule's few retries.
  ExpiredProviderToken: temporary("network", "expired_provider_token"),
  MissingProviderToken: AUTH,
  InvalidSigningKey: AUTH,
  BadCertificate: AUTH,
  BadCertificateEnvironment: AUTH,
  Forbidden: AUTH,
  UnrelatedKeyIdInToken: AUTH,
  BadEnvironmentKeyInToken: AUTH,

  TooManyRequests: RATE,
  TooManyProviderTokenUpdates: RATE,

  InternalServerError: temporary("provider_outage", "internal_server_error"),
  ServiceUnavailable: OUTAGE,
  Shutdown: temporary("provider_outage", "shutdown"),
  // apns2 reports non-JSON bodies (e.g. a 502 page from a proxy) as UnknownError.
  UnknownError: temporary("provider_outage", "unknown_provider_error"),
  IdleTimeout: temporary("network", "idle_timeout"),
};

/** APNs HTTP status → rule, used only when the reason is not in {@link APNS_REASON_RULES}. */
export const APNS_STATUS_RULES: Readonly<Record<number, OutcomeRule>> = {
  403: AUTH,
  404: CONFIG,
  405: CONFIG,
  410: permanent("unregistered", SUBSCRIPTION_STATUS.PUSH_UNSUBSCRIBED),
  413: permanent("message_too_large"),
  429: RATE,
};

/** FCM v1 error code through firebase-admin's `FirebaseMessagingError.code` (or `app/*`) → rule. */
export const FCM_CODE_RULES: Readonly<Record<string, OutcomeRule>> = {
  "messaging/registration-token-not-registered": permanent("unregistered", SUBSCRIPTION_STATUS.PUSH_UNSUBSCRIBED),
  "messaging/invalid-registration-token": permanent("invalid_token", SUBSCRIPTION_STATUS.INVALID_REGISTRATION),
  "messaging/invalid-recipient": permanent("invalid_token", SUBSCRIPTION_STATUS.MISSING_REGISTRATION),
  // firebase-admin folds 403 SENDER_ID_MISMATCH and PERMISSION_DENIED into this code. Only the
  // former is about the device (refined below); a disabled FCM API or a service account without
  // rights must not unsubscribe every Android device it reaches.
  "messaging/mismatched-credential": AUTH,
  // INVALID_ARGUMENT covers both bad tokens and bad payloads; FCM_MESSAGE_REFINEMENTS picks out the token case.
  "messaging/invalid-argument": CONTENT,
  "messaging/invalid-payload": CONTENT,
  "messaging/invalid-data-payload-key": CONTENT,
  "messaging/invalid-options": CONTENT,
  "messaging/payload-size-limit-exceeded": permanent("message_too_large"),
  "messaging/invalid-package-name": CONFIG,
  "messaging/too-many-topics": CONFIG,

  "messaging/third-party-auth-error": AUTH,
  "messaging/authentication-error": AUTH,

  "messaging/message-rate-exceeded": RATE,
  "messaging/device-message-rate-exceeded": temporary("rate_limited", "device_rate_limited"),
  "messaging/topics-message-rate-exceeded": RATE,

  "messaging/server-unavailable": OUTAGE,
  "messaging/internal-error": temporary("provider_outage", "internal_server_error"),
  // UNSPECIFIED_ERROR and non-JSON 5xx pages land here; FCM says to retry these.
  "messaging/unknown-error": temporary("provider_outage", "unknown_provider_error"),

  "app/network-error": temporary("network", "network_error"),
  "app/network-timeout": temporary("network", "timeout"),
  // The client was retired (credential rotation) under a send: nothing was asked, so send again.
  "app/app-deleted": temporary("network", "provider_closed"),
  // Token fetch failed; usually transient (OAuth endpoint unreachable). Revoked keys are refined to auth below.
  "app/invalid-credential": temporary("network", "credential_fetch_failed"),
};

/** Message-text refinements applied before {@link FCM_CODE_RULES}, for codes firebase-admin folds together. */
export const FCM_MESSAGE_REFINEMENTS: ReadonlyArray<{ code: string; pattern: RegExp; rule: OutcomeRule }> = [
  // FCM: 400 INVALID_ARGUMENT "The registration token is not a valid FCM registration token".
  { code: "messaging/invalid-argument", pattern: /registration token/i, rule: permanent("invalid_token", SUBSCRIPTION_STATUS.INVALID_REGISTRATION) },
  // FCM: 403 SENDER_ID_MISMATCH "SenderId mismatch": the token belongs to another sender.
  { code: "messaging/mismatched-credential", pattern: /senderid mismatch|sender id mismatch/i, rule: permanent("sender_id_mismatch", SUBSCRIPTION_STATUS.SENDER_ID_MISMATCH) },
  { code: "app/invalid-credential", pattern: /invalid_grant|invalid_client|unauthorized_client|private key|PEM/i, rule: AUTH },
];

/** apns2 signs its JWT with fast-jwt; an unusable .p8 key surfaces as a `FAST_JWT_*` error at send time. */
export const APNS_SIGNING_ERROR_PREFIX = "FAST_JWT_";

/** Node/undici/TLS error codes that mean "the bytes did not get through" → normalised reason. */
export const NETWORK_ERROR_REASONS: Readonly<Record<string, string>> = {
  ECONNRESET: "connection_reset",
  ECONNREFUSED: "connection_refused",
  ECONNABORTED: "connection_aborted",
  EPIPE: "connection_reset",
  ETIMEDOUT: "timeout",
  EHOSTUNREACH: "host_unreachable",
  ENETUNREACH: "host_unreachable",
  ENETDOWN: "host_unreachable",
  ENOTFOUND: "dns_error",
  EAI_AGAIN: "dns_error",
  EDNSGUARD: "dns_blocked",
  EPROTO: "tls_error",
  ERR_SOCKET_CLOSED: "connection_reset",
  ERR_STREAM_PREMATURE_CLOSE: "connection_reset",
  ABORT_ERR: "aborted",
  UND_ERR_SOCKET: "socket_error",
  UND_ERR_CONNECT_TIMEOUT: "timeout",
  UND_ERR_HEADERS_TIMEOUT: "timeout",
  UND_ERR_BODY_TIMEOUT: "timeout",
  UND_ERR_ABORTED: "aborted",
  UND_ERR_CLOSED: "provider_closed",
  UND_ERR_DESTROYED: "provider_closed",
  UND_ERR_REQ_RETRY: "socket_error",
  // undici's HTTP/2 client reports a stream closed early, a half-closed stream, a frame error or a
  // failed PING this way: the request may never have reached Apple, so it is a transport failure.
  UND_ERR_INFO: "stream_reset",
  ERR_HTTP2_STREAM_ERROR: "stream_reset",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "tls_error",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: "tls_error",
  DEPTH_ZERO_SELF_SIGNED_CERT: "tls_error",
  SELF_SIGNED_CERT_IN_CHAIN: "tls_error",
  CERT_HAS_EXPIRED: "tls_error",
  CERT_NOT_YET_VALID: "tls_error",
  ERR_TLS_CERT_ALTNAME_INVALID: "tls_error",
};

/** Code prefixes that are transport failures as a family (HTTP/2 session/stream, TLS). */
export const NETWORK_ERROR_PREFIXES: ReadonlyArray<[prefix: string, reason: string]> = [
  ["ERR_HTTP2_", "http2_error"],
  ["ERR_SSL_", "tls_error"],
  ["ERR_TLS_", "tls_error"],
];

/** Extra context the adapter captured from the HTTP response, which provider errors do not carry. */
export interface ClassifyHints {
  /** Raw `Retry-After` header value. */
  retryAfter?: string | string[] | number;
  /** Clock for HTTP-date Retry-After values (tests). */
  nowMs?: number;
}

/** Parses Retry-After (delta-seconds or HTTP-date) into milliseconds; undefined when absent or unusable. */
export function parseRetryAfter(value: string | string[] | number | undefined, nowMs: number = Date.now()): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined || raw === "") return undefined;
  if (typeof raw === "number") return Number.isFinite(raw) && raw >= 0 ? Math.round(raw * 1000) : undefined;
  const trimmed = raw.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}

interface ErrorLike {
  code?: unknown;
  message?: unknown;
  name?: unknown;
  cause?: unknown;
}

function asErrorLike(err: unknown): ErrorLike {
  return typeof err === "object" && err !== null ? (err as ErrorLike) : { message: String(err) };
}

function messageOf(err: unknown): string {
  const e = asErrorLike(err);
  return typeof e.message === "string" ? e.message : String(err);
}

/** Finds a transport-level failure anywhere in the `cause` chain (undici and fetch wrap the socket error). */
export function networkReason(err: unknown): { code: string; reason: string } | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < 6 && current !== undefined && current !== null; depth += 1) {
    const e = asErrorLike(current);
    const code = typeof e.code === "string" ? e.code : undefined;
    if (code !== undefined) {
      const exact = NETWORK_ERROR_REASONS[code];
      if (exact !== undefined) return { code, reason: exact };
      const family = NETWORK_ERROR_PREFIXES.find(([prefix]) => code.startsWith(prefix));
      if (family !== undefined) return { code, reason: family[1] };
    }
    if (e.name === "AbortError" || e.name === "TimeoutError") return { code: String(e.name), reason: e.name === "AbortError" ? "aborted" : "timeout" };
    current = e.cause;
  }
  return undefined;
}

function toOutcome(rule: OutcomeRule, code: string, detail: string, hints: ClassifyHints): FailureOutcome {
  if (rule.kind === "permanent") {
    const out: FailureOutcome = { kind: "permanent", reason: rule.reason, code, detail };
    if (rule.subscriptionStatus !== undefined) out.subscriptionStatus = rule.subscriptionStatus;
    return out;
  }
  const out: FailureOutcome = { kind: "temporary", class: rule.class, reason: rule.reason, code };
  // Retry-After is an answer from the provider, so it never applies to a request that got no answer.
  const retryAfterMs = rule.class === "network" ? undefined : parseRetryAfter(hints.retryAfter, hints.nowMs);
  if (retryAfterMs !== undefined) out.retryAfterMs = retryAfterMs;
  return out;
}

function unclassified(err: unknown): FailureOutcome {
  const e = asErrorLike(err);
  const code = typeof e.code === "string" ? e.code : typeof e.name === "string" ? e.name : "unknown";
  // Unknown exceptions are most likely our own bugs; retrying would only hide them.
  return { kind: "permanent", reason: "unclassified_error", code, detail: messageOf(err) };
}

interface ApnsErrorLike {
  statusCode: number;
  reason: string;
  timestamp?: number;
}

function asApnsError(err: unknown): ApnsErrorLike | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const e = err as { statusCode?: unknown; reason?: unknown; response?: { reason?: unknown; timestamp?: unknown } };
  if (typeof e.statusCode !== "number") return undefined;
  const reason = typeof e.reason === "string" ? e.reason : typeof e.response?.reason === "string" ? e.response.reason : "UnknownError";
  const ts = e.response?.timestamp;
  return typeof ts === "number" ? { statusCode: e.statusCode, reason, timestamp: ts } : { statusCode: e.statusCode, reason };
}

function apnsStatusRule(status: number): OutcomeRule {
  const exact = APNS_STATUS_RULES[status];
  if (exact !== undefined) return exact;
  if (status >= 500) return OUTAGE;
  return permanent("unclassified_error");
}

/** Classifies anything apns2 can throw: `ApnsError` (statusCode + reason), undici/HTTP2 transport errors, or other exceptions. */
export function classifyApnsError(err: unknown, hints: ClassifyHints = {}): FailureOutcome {
  const apns = asApnsError(err);
  if (apns !== undefined) {
    const rule = APNS_REASON_RULES[apns.reason] ?? apnsStatusRule(apns.statusCode);
    const since = apns.timestamp !== undefined ? ` (token invalid since ${new Date(apns.timestamp).toISOString()})` : "";
    return toOutcome(rule, apns.reason, `APNs ${apns.statusCode} ${apns.reason}${since}`, hints);
  }
  const net = networkReason(err);
  if (net !== undefined) return toOutcome(temporary("network", net.reason), net.code, messageOf(err), hints);
  const code = asErrorLike(err).code;
  if (typeof code === "string" && code.startsWith(APNS_SIGNING_ERROR_PREFIX)) return toOutcome(AUTH, code, messageOf(err), hints);
  return unclassified(err);
}

/** Classifies anything firebase-admin can throw or report in a SendResponse: `FirebaseMessagingError`, `app/*` errors, raw transport errors. */
export function classifyFcmError(err: unknown, hints: ClassifyHints = {}): FailureOutcome {
  const e = asErrorLike(err);
  const code = typeof e.code === "string" ? e.code : undefined;
  const message = messageOf(err);
  if (code !== undefined && code.includes("/")) {
    const refined = FCM_MESSAGE_REFINEMENTS.find((r) => r.code === code && r.pattern.test(message));
    const rule = refined?.rule ?? FCM_CODE_RULES[code];
    if (rule !== undefined) return toOutcome(rule, code, message, hints);
  }
  const net = networkReason(err);
  if (net !== undefined) return toOutcome(temporary("network", net.reason), net.code, message, hints);
  return unclassified(err);
}
