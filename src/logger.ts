import pino, { type DestinationStream, type Logger } from "pino";

/** Field names that carry secrets; redacted wherever they appear up to {@link REDACTED_DEPTH} levels down. */
const SECRET_FIELDS = [
  "token", "api_key", "apiKey", "password", "signingKey", "signing_key", "private_key", "credentials", "device_token", "plaintext",
  // apns2 names the device token deviceToken; firebase-admin's credential shapes; a provider
  // notification holds the token and the (personal) payload.
  "deviceToken", "accessToken", "access_token", "serviceAccount", "service_account", "notification",
];

/** How deep a secret field name is still found (pino's wildcards match exactly one level each). */
const REDACTED_DEPTH = 4;

/**
 * Paths that may carry secrets or personal data; pino replaces them before a line is written.
 * Device tokens, API keys, admin tokens, credentials and template variables never reach logs.
 */
export const REDACTED_PATHS = [
  "req.headers[\"x-api-key\"]",
  "req.headers.authorization",
  "req.headers.cookie",
  // Tenants often build it from their user ids ("welcome-<user>"); erasure clears it in the database.
  "req.headers[\"idempotency-key\"]",
  ...SECRET_FIELDS.flatMap((field) => Array.from({ length: REDACTED_DEPTH }, (_, depth) => [...Array<string>(depth).fill("*"), field].join("."))),
];

/**
 * Fields of PostgreSQL errors that quote stored or submitted values (`Key (external_id)=(…)`,
 * `Failing row contains (…)`, the JSON a statement choked on); the code, constraint, table and
 * column say what went wrong without them.
 */
const VALUE_QUOTING_ERROR_FIELDS = ["detail", "where", "internalQuery", "parameters", "notification"];

/**
 * pino's error serializer without the fields that quote row values (or, on apns2's ApnsError, the
 * notification with its device token and payload). pino-http hands its custom
 * serializers an error it already serialized (a plain object), so those are cleaned too.
 */
export function serializeError(error: unknown): unknown {
  const serialized = error instanceof Error ? (pino.stdSerializers.err(error) as unknown as Record<string, unknown>) : error;
  return withoutQuotedValues(serialized, 0);
}

/**
 * A serialized error without the value-quoting fields, also in the errors of an AggregateError
 * (pino writes each with all its fields: a campaign chunk whose provider groups all threw logs one).
 */
function withoutQuotedValues(serialized: unknown, depth: number): unknown {
  if (serialized === null || typeof serialized !== "object" || Array.isArray(serialized)) return serialized;
  const cleaned: Record<string, unknown> = { ...(serialized as Record<string, unknown>) };
  for (const field of VALUE_QUOTING_ERROR_FIELDS) delete cleaned[field];
  if (Array.isArray(cleaned.aggregateErrors)) {
    cleaned.aggregateErrors = depth < 4 ? cleaned.aggregateErrors.map((inner: unknown) => withoutQuotedValues(inner, depth + 1)) : "[nested too deep]";
  }
  return cleaned;
}

/** Query parameters whose values are never personal: filters, paging, report options. */
const PLAIN_QUERY_PARAMETERS = new Set([
  "page", "per_page", "status", "from", "to", "group_by", "channel_type", "channel", "limit", "version", "is_active", "segment",
  // Ids we generate (UUIDs): pseudonymous, and what a trace needs.
  "subscription_id", "campaign_id", "template_id", "message_id",
]);

/** Literal path segments below /users/ (everything else there is an external user id). */
const USERS_ROUTES = new Set(["identify", "logout", "erasure-requests"]);

/**
 * A request URL as it may be logged: external user ids (in `/users/<id>` and in query values such
 * as `external_id` or `user_id`) are personal data that erasure cannot reach in a log, so they are
 * replaced; ids we generate (UUIDs) and plain filters stay, for tracing.
 */
export function redactRequestUrl(url: string): string {
  const queryAt = url.indexOf("?");
  // Case-insensitive like Express's routing: `/USERS/<id>` reaches the same handler.
  const path = (queryAt === -1 ? url : url.slice(0, queryAt)).replace(/(\/users\/)([^/]+)/i, (whole, prefix: string, segment: string) =>
    USERS_ROUTES.has(segment.toLowerCase()) ? whole : `${prefix}[redacted]`,
  );
  if (queryAt === -1) return path;
  const query = [...new URLSearchParams(url.slice(queryAt + 1))]
    .map(([name, value]) => `${encodeURIComponent(name)}=${PLAIN_QUERY_PARAMETERS.has(name) ? encodeURIComponent(value) : "[redacted]"}`)
    .join("&");
  return `${path}?${query}`;
}

/** Creates the process logger: JSON lines, secrets redacted; `destination` (default stdout) lets tests capture the stream. */
export function createLogger(level: string, name = "automata-signal", destination?: DestinationStream): Logger {
  // `error` too: the Temporal SDK logs its failures under that key, which pino would print as `{}`.
  const options = { name, level, redact: { paths: REDACTED_PATHS, censor: "[redacted]" }, serializers: { err: serializeError, error: serializeError } };
  return destination ? pino(options, destination) : pino(options);
}
