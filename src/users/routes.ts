import type { z } from "zod";
import { defineRoute, type RouteSpec } from "../http/route";
import { ApiError, notFound } from "../http/errors";
import { IdParams } from "../http/validation";
import { PaginationQuery } from "../http/pagination";
import {
  ErasureAccepted,
  ErasureRequestView,
  ExternalIdParams,
  IdentifyBody,
  IdentifyResult,
  LogoutBody,
  LogoutResult,
  UserSubscriptionList,
} from "./schemas";
import {
  collectSubscriptionIds,
  createOrReuseErasureRequest,
  findErasureRequest,
  findUserByExternalId,
  identifyUser,
  listUserSubscriptions,
  logoutSubscriptions,
  type ErasureRequestRow,
} from "./repository";
import { startErasureWorkflow } from "./erasure";
import { withinApiDeadline } from "../http/temporal-deadline";
import { iso } from "../http/format";
import { assertKeyApplication } from "../http/auth";

const TAG = "Users";

function erasureView(request: ErasureRequestRow): z.infer<typeof ErasureRequestView> {
  const result = request.result ?? {};
  const count = (key: string): number => (typeof result[key] === "number" ? (result[key] as number) : 0);
  return {
    request_id: request.id,
    status: request.status,
    requested_at: iso(request.requested_at)!,
    completed_at: iso(request.completed_at),
    // Partial progress is internal; the counts are only meaningful once the erasure is complete.
    result:
      request.status === "completed"
        ? {
            users: count("users"),
            subscriptions: count("subscriptions"),
            messages_scrubbed: count("messages_scrubbed"),
            subscription_events_scrubbed: count("subscription_events_scrubbed"),
          }
        : null,
  };
}

/** Routes of the users domain (REF-001 §3): identify, logout, a user's subscriptions, GDPR erasure. */
export const userRoutes: RouteSpec[] = [
  defineRoute({
    method: "post",
    path: "/users/identify",
    summary: "Find or create a user by external_id and link subscriptions to them",
    tag: TAG,
    auth: "apiKey",
    body: IdentifyBody,
    responses: { 200: { description: "The user (created if new); the subscriptions are linked", schema: IdentifyResult } },
    handler: async ({ body, application, deps }) => {
      assertKeyApplication(body.application_id, application.id);
      const { user, notLinked } = await identifyUser(deps.db, application.id, {
        externalId: body.external_id,
        subscriptionIds: collectSubscriptionIds(body.subscriptions, body.subscription_id),
        properties: body.properties,
        previousExternalId: body.previous_external_id,
      });
      // not_linked only when the guard was sent: the REF-001 answer stays as it was otherwise.
      return {
        data: {
          user_id: user.id,
          external_id: user.external_id,
          created_at: iso(user.created_at)!,
          ...(body.previous_external_id !== undefined ? { not_linked: notLinked } : {}),
        },
      };
    },
  }),
  defineRoute({
    method: "post",
    path: "/users/logout",
    summary: "Unlink subscriptions from their user (they stay subscribed, anonymously)",
    tag: TAG,
    auth: "apiKey",
    body: LogoutBody,
    responses: { 200: { description: "The subscriptions that were unlinked", schema: LogoutResult } },
    handler: async ({ body, application, deps }) => {
      assertKeyApplication(body.application_id, application.id);
      const unlinked = await logoutSubscriptions(deps.db, application.id, {
        subscriptionIds: collectSubscriptionIds(body.subscriptions, body.subscription_id),
        externalId: body.external_id,
      });
      return { data: { unlinked_subscriptions: unlinked } };
    },
  }),
  // Declared before /users/erasure-requests/:id so a user whose external_id is literally
  // "erasure-requests" can still list their subscriptions; a request id never ends in "/subscriptions".
  defineRoute({
    method: "get",
    path: "/users/:external_id/subscriptions",
    summary: "List a user's subscriptions (never their tokens)",
    tag: TAG,
    auth: "apiKey",
    params: ExternalIdParams,
    query: PaginationQuery,
    responses: { 200: { description: "A page of the user's subscriptions", schema: UserSubscriptionList } },
    handler: async ({ params, query, application, deps }) => {
      const user = await findUserByExternalId(deps.db, application.id, params.external_id);
      if (!user) throw notFound("user", params.external_id);
      const { rows, pagination } = await listUserSubscriptions(deps.db, application.id, user.id, query.page, query.per_page);
      return {
        data: {
          subscriptions: rows.map((s) => ({
            id: s.id,
            type: s.subscription_type,
            subscription_status: s.subscription_status,
            subscribed_at: iso(s.subscribed_at),
            unsubscribed_at: iso(s.unsubscribed_at),
            last_active_at: iso(s.last_active_at),
            created_at: iso(s.created_at)!,
          })),
          pagination,
        },
      };
    },
  }),
  defineRoute({
    method: "get",
    path: "/users/erasure-requests/:id",
    summary: "Follow a GDPR erasure request",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    responses: { 200: { description: "The request's status and, once completed, what was erased", schema: ErasureRequestView } },
    handler: async ({ params, application, deps }) => {
      const request = await findErasureRequest(deps.db, application.id, params.id);
      if (!request) throw notFound("erasure request", params.id);
      return { data: erasureView(request) };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/users/:external_id",
    summary: "Request GDPR erasure of a user (asynchronous; follow it at /users/erasure-requests/{id})",
    tag: TAG,
    auth: "apiKey",
    params: ExternalIdParams,
    responses: { 202: { description: "Accepted; a retry while it is in flight, or within 24 h after it completed, returns the same request", schema: ErasureAccepted } },
    handler: async ({ params, application, deps, req }) => {
      const outcome = await createOrReuseErasureRequest(deps.db, application.id, params.external_id);
      if (!outcome) throw notFound("user", params.external_id);
      const { request } = outcome;
      try {
        // A completed request (a retried DELETE) has nothing left to start.
        // Within the API's deadline: the reconciler starts what a Temporal outage cut short.
        if (request.status !== "completed") await withinApiDeadline(deps, () => startErasureWorkflow(deps, request));
      } catch (error) {
        // The request row is committed and stays pending: a retried DELETE finds it and starts the
        // (idempotent) workflow again, so the request is never lost and never duplicated.
        req.log.error({ err: error, erasure_request_id: request.id }, "could not start the erasure workflow; the request stays pending");
        throw new ApiError(
          "service_unavailable",
          "The erasure request was recorded but could not be started; retry the DELETE to resume it",
          { request_id: request.id, status: request.status },
          { "Retry-After": "5" },
        );
      }
      return {
        status: 202,
        data: {
          request_id: request.id,
          status: request.status,
          message: "User deletion request has been accepted",
          requested_at: iso(request.requested_at)!,
        },
      };
    },
  }),
];
