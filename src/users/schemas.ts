import { z } from "zod";
import { PaginationSchema } from "../http/pagination";
import { uuidField } from "../http/validation";
import { ExternalUserId } from "../subscriptions/schemas";

/** Most subscription ids one identify/logout call may name; an SDK sends a device's few ids. */
export const MAX_SUBSCRIPTIONS_PER_CALL = 100;

/**
 * The tenant's own user identifier (users.external_id, 1..255 characters after trimming). The
 * shared {@link ExternalUserId}: every endpoint that takes an external id (identify, logout, the
 * `/users/:external_id` paths, subscriptions' `user_id`, sends' `external_id`) trims it the same
 * way, so an id stored by one is found by all the others.
 */
export const ExternalId = ExternalUserId;

const SubscriptionIds = z
  .array(uuidField)
  .max(MAX_SUBSCRIPTIONS_PER_CALL, `at most ${MAX_SUBSCRIPTIONS_PER_CALL} subscriptions per call`)
  .describe("subscription ids (REF-001)");

// SEQ-001's SDK sends `application_id` in the body; it is accepted so that SDK works with strict
// bodies, and checked against the API key's application (the key decides the tenant, never the body).
const ApplicationIdField = uuidField.optional().describe("optional; must be the API key's application");

/** Body of `POST /users/identify` (REF-001 §3.1). */
export const IdentifyBody = z.strictObject({
  external_id: ExternalId,
  subscriptions: SubscriptionIds.optional(),
  subscription_id: uuidField.optional().describe("shorthand for a single subscription"),
  properties: z
    .record(z.string(), z.unknown())
    .optional()
    .describe("user properties, shallow-merged into the stored ones (a key sent again replaces its value)"),
  previous_external_id: ExternalId.nullable()
    .optional()
    .describe(
      "optional guard: link only subscriptions linked to this user, or, when null, only anonymous ones, so a retried or late identify cannot take a device from a newer login; the others are left alone and listed in not_linked",
    ),
  application_id: ApplicationIdField,
});

/** Body of `POST /users/logout` (REF-001 §3.2): at least one subscription id is required. */
export const LogoutBody = z
  .strictObject({
    subscriptions: SubscriptionIds.optional(),
    subscription_id: uuidField.optional().describe("shorthand for a single subscription"),
    external_id: ExternalId.optional().describe(
      "optional guard: only unlink subscriptions still linked to this user, so a late logout cannot undo a newer login",
    ),
    application_id: ApplicationIdField,
  })
  .refine((body) => (body.subscriptions?.length ?? 0) > 0 || body.subscription_id !== undefined, {
    message: "at least one subscription id is required",
    path: ["subscriptions"],
  });

/** `{external_id}` path parameter of the user routes. */
export const ExternalIdParams = z.strictObject({ external_id: ExternalId });

/** Response of identify: REF-001 §3.1. */
export const IdentifyResult = z.object({
  user_id: z.string(),
  external_id: z.string(),
  created_at: z.string(),
  not_linked: z.array(z.string()).optional().describe("with previous_external_id: the subscriptions left alone, linked to another user"),
});

/** Response of logout: REF-001 §3.2. */
export const LogoutResult = z.object({ unlinked_subscriptions: z.array(z.string()) });

/** One of a user's subscriptions as listed (REF-001 §3.3); tokens are never part of it. */
export const UserSubscriptionView = z.object({
  id: z.string(),
  type: z.string(),
  subscription_status: z.number().int().describe("REF-002 status code"),
  subscribed_at: z.string().nullable(),
  unsubscribed_at: z.string().nullable(),
  last_active_at: z.string().nullable(),
  created_at: z.string(),
});

/** Response of `GET /users/:external_id/subscriptions`. */
export const UserSubscriptionList = z.object({ subscriptions: z.array(UserSubscriptionView), pagination: PaginationSchema });

/** Lifecycle of an erasure request (erasure_requests.status). */
export const ErasureStatus = z.enum(["pending", "running", "completed", "failed"]);

/** Response of `DELETE /users/:external_id` (REF-001 §3.4, asynchronous). */
export const ErasureAccepted = z.object({
  request_id: z.string(),
  status: ErasureStatus,
  message: z.string(),
  requested_at: z.string(),
});

/** Response of `GET /users/erasure-requests/:id`. */
export const ErasureRequestView = z.object({
  request_id: z.string(),
  status: ErasureStatus,
  requested_at: z.string(),
  completed_at: z.string().nullable(),
  result: z
    .object({
      users: z.number().int(),
      subscriptions: z.number().int(),
      messages_scrubbed: z.number().int(),
      subscription_events_scrubbed: z.number().int(),
    })
    .nullable()
    .describe("what was erased; null until completed"),
});
