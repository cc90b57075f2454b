/**
 * The error codes of REF-001 §8 (plus the few this implementation adds, marked "ext"), defined once:
 * routes throw ApiError with a code and the HTTP status always comes from this table.
 */
export const ERROR_CODES = {
  invalid_request: { status: 400, message: "The request is malformed" },
  authentication_failed: { status: 401, message: "The API key is missing or invalid" },
  permission_denied: { status: 403, message: "Permission denied" },
  resource_not_found: { status: 404, message: "The requested resource was not found" },
  validation_error: { status: 422, message: "The request data failed validation" },
  rate_limit_exceeded: { status: 429, message: "Too many requests" },
  internal_server_error: { status: 500, message: "Internal server error" },
  // ext: express rejects bodies over the limit before our code runs; 413 is the honest status.
  payload_too_large: { status: 413, message: "The request body is too large" },
  // ext: a state change the resource's current state does not allow (e.g. re-enable an unsubscribed device).
  invalid_status_transition: { status: 409, message: "The resource's current status does not allow this change" },
  // ext: the same Idempotency-Key was reused with a different request body.
  idempotency_key_reused: { status: 409, message: "This Idempotency-Key was already used for a different request" },
  service_unavailable: { status: 503, message: "A dependency is unavailable" },
  // ext: Node's HTTP parser refuses headers over its limit (16 KiB) before any route runs.
  request_header_too_large: { status: 431, message: "The request's headers are too large" },
  // ext: the client did not send its request headers or body within the server's request timeout.
  request_timeout: { status: 408, message: "The request was not received in time" },

  invalid_token: { status: 400, message: "The subscription token is invalid" },
  invalid_subscription_type: { status: 400, message: "The subscription type is not supported" },
  duplicate_subscription: { status: 400, message: "A subscription with this token already exists" },
  subscription_disabled: { status: 400, message: "The subscription is disabled" },

  message_too_large: { status: 400, message: "The message is too large" },
  invalid_message_content: { status: 400, message: "The message content is invalid" },
  quota_exceeded: { status: 403, message: "The message quota is exhausted" },
  message_already_processed: { status: 400, message: "The message was already processed" },

  template_not_found: { status: 404, message: "The template was not found" },
  invalid_template_variables: { status: 400, message: "The template variables are invalid" },
  missing_required_variable: { status: 400, message: "A required template variable is missing" },
  template_inactive: { status: 400, message: "The template is disabled" },

  campaign_not_found: { status: 404, message: "The campaign was not found" },
  invalid_targeting_criteria: { status: 400, message: "The targeting criteria are invalid" },
  campaign_already_started: { status: 400, message: "The campaign has already started" },
  campaign_already_completed: { status: 400, message: "The campaign has already completed" },
} as const satisfies Record<string, { status: number; message: string }>;

/** One of the error codes in {@link ERROR_CODES}. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** An error that becomes a REF-001 error response; its HTTP status comes from {@link ERROR_CODES}. */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message?: string, details: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
    super(message ?? ERROR_CODES[code].message);
    this.name = "ApiError";
    this.code = code;
    this.details = details;
    this.headers = headers;
  }

  /** HTTP status for this error's code. */
  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  /** The REF-001 error envelope. */
  toBody(): { status: "error"; error: { code: ErrorCode; message: string; details: Record<string, unknown> } } {
    return { status: "error", error: { code: this.code, message: this.message, details: this.details } };
  }
}

/** Shorthand for the 404 every lookup answers, including for another tenant's ids. */
export function notFound(kind: string, id: string): ApiError {
  return new ApiError("resource_not_found", `${kind} not found`, { id });
}
