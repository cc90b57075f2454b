import { defineRoute, type RouteSpec } from "../http/route";
import { ApiError } from "../http/errors";
import { IdParams } from "../http/validation";
import type { StatusActor } from "./status";
import {
  AddTagsBody,
  CreateSubscriptionBody,
  CreatedSubscriptionView,
  DeleteTagsBody,
  ListSubscriptionsQuery,
  StatusChangeBody,
  SubscriptionListView,
  SubscriptionView,
  SUBSCRIPTION_TYPES,
  TokenUpdatedView,
  UpdateSubscriptionBody,
  UpdateTokenBody,
  isSubscriptionType,
  type DeviceInfoInput,
  type SubscriptionType,
} from "./schemas";
import {
  addTags,
  applyStatusAction,
  listSubscriptions,
  loadSubscriptionView,
  patchSubscription,
  registerSubscription,
  removeTags,
  updateSubscriptionToken,
  validTokenOrThrow,
} from "./repository";
import { assertKeyApplication } from "../http/auth";

const TAG = "Subscriptions";

/** `invalid_subscription_type` (REF-001 §8.3) rather than a generic validation error, as the contract lists it. */
function subscriptionTypeOrThrow(type: string): SubscriptionType {
  if (!isSubscriptionType(type)) {
    throw new ApiError("invalid_subscription_type", "The subscription type is not supported", { field: "type", supported: SUBSCRIPTION_TYPES });
  }
  return type;
}

/** The top-level `timezone` and `device_info.timezone` mean the same thing; both given and different is an error, not a guess. */
function timezoneOf(topLevel: string | null | undefined, deviceInfo: DeviceInfoInput | undefined): string | null | undefined {
  const fromDevice = deviceInfo?.timezone;
  if (topLevel !== undefined && fromDevice !== undefined && topLevel !== fromDevice) {
    throw new ApiError("validation_error", "The request body failed validation", {
      in: "body",
      fields: { timezone: "conflicts with device_info.timezone; send one of them" },
    });
  }
  return topLevel !== undefined ? topLevel : fromDevice;
}

/** Routes of the subscriptions domain (REF-001 §2). */
export const subscriptionRoutes: RouteSpec[] = [
  defineRoute({
    method: "post",
    path: "/subscriptions",
    summary:
      "Register a subscription. Idempotent per (type, token): repeating a registration answers 200 with the existing subscription " +
      "(device info, timezone, tags and user link updated, status unchanged); a new one answers 201.",
    tag: TAG,
    auth: "apiKey",
    body: CreateSubscriptionBody,
    responses: {
      201: { description: "Created", schema: CreatedSubscriptionView },
      200: { description: "Already registered: the existing subscription", schema: CreatedSubscriptionView },
    },
    handler: async ({ body, application, deps }) => {
      assertKeyApplication(body.application_id, application.id);
      const type = subscriptionTypeOrThrow(body.type);
      const token = validTokenOrThrow(type, body.token);
      const timezone = timezoneOf(body.timezone, body.device_info);
      const { id, created } = await registerSubscription(deps, application.id, {
        type,
        token,
        userExternalId: body.user_id,
        deviceInfo: body.device_info,
        timezone: timezone ?? undefined,
        tags: body.tags,
      });
      const view = await loadSubscriptionView(deps, application.id, id);
      return { status: created ? 201 : 200, data: { subscription_id: id, ...view } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/subscriptions",
    summary: "List subscriptions, newest first, filtered by user_id (external id), type and status",
    tag: TAG,
    auth: "apiKey",
    query: ListSubscriptionsQuery,
    responses: { 200: { description: "One page of subscriptions", schema: SubscriptionListView } },
    handler: async ({ query, application, deps }) => {
      const type = query.type === undefined ? undefined : subscriptionTypeOrThrow(query.type);
      const data = await listSubscriptions(deps, application.id, { userExternalId: query.user_id, type, status: query.status }, query.page, query.per_page);
      return { data };
    },
  }),
  defineRoute({
    method: "get",
    path: "/subscriptions/:id",
    summary: "Get a subscription (the token is never returned, only token_masked)",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    responses: { 200: { description: "The subscription", schema: SubscriptionView } },
    handler: async ({ params, application, deps }) => ({ data: await loadSubscriptionView(deps, application.id, params.id) }),
  }),
  defineRoute({
    method: "patch",
    path: "/subscriptions/:id",
    summary: "Update token, device info, timezone or tags (merged) of a subscription",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    body: UpdateSubscriptionBody,
    responses: { 200: { description: "The updated subscription", schema: SubscriptionView } },
    handler: async ({ params, body, application, deps }) => {
      const timezone = timezoneOf(body.timezone, body.device_info);
      await patchSubscription(deps, application.id, params.id, { token: body.token, deviceInfo: body.device_info, timezone, tags: body.tags });
      return { data: await loadSubscriptionView(deps, application.id, params.id) };
    },
  }),
  defineRoute({
    method: "post",
    path: "/subscriptions/:id/disable",
    summary:
      'Disable a subscription. Optional JSON body {"reason": "user" | "api"}: "user" (default; the SDK when the user turns ' +
      'notifications off) sets -2 UNSUBSCRIBED, "api" (a server-side decision) sets -31 DISABLED_BY_API (REF-002 §2)',
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    // REF-001 §2.4/§2.5 show a bare POST.
    body: StatusChangeBody,
    optionalBody: true,
    responses: { 200: { description: "The subscription after the change", schema: SubscriptionView } },
    handler: async ({ params, body, application, deps }) => {
      const actor: StatusActor = body.reason ?? "user";
      await applyStatusAction(deps, application.id, params.id, { type: "disable", actor });
      return { data: await loadSubscriptionView(deps, application.id, params.id) };
    },
  }),
  defineRoute({
    method: "post",
    path: "/subscriptions/:id/enable",
    summary:
      'Enable a subscription (status 1). Optional JSON body {"reason": "user" | "api"}, default "api". From -2 and other ' +
      'user-refusal codes only "user" may enable (REF-002 §8.2); delivery errors such as -10 need update-token; else 409 invalid_status_transition',
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    // REF-001 §2.4/§2.5 show a bare POST.
    body: StatusChangeBody,
    optionalBody: true,
    responses: { 200: { description: "The subscription after the change", schema: SubscriptionView } },
    handler: async ({ params, body, application, deps }) => {
      const actor: StatusActor = body.reason ?? "api";
      await applyStatusAction(deps, application.id, params.id, { type: "enable", actor });
      return { data: await loadSubscriptionView(deps, application.id, params.id) };
    },
  }),
  defineRoute({
    method: "post",
    path: "/subscriptions/:id/update-token",
    summary: "Replace the token (e.g. a refreshed push token); clears delivery errors such as -10 back to 1",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    body: UpdateTokenBody,
    responses: { 200: { description: "The subscription with token_updated_at", schema: TokenUpdatedView } },
    handler: async ({ params, body, application, deps }) => {
      await updateSubscriptionToken(deps, application.id, params.id, body.token);
      const view = await loadSubscriptionView(deps, application.id, params.id);
      return { data: { ...view, token_updated_at: view.updated_at } };
    },
  }),
  defineRoute({
    method: "post",
    path: "/subscriptions/:id/tags",
    summary: "Add or overwrite tags (merged; values stored as strings)",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    body: AddTagsBody,
    responses: { 200: { description: "The subscription with its tags", schema: SubscriptionView } },
    handler: async ({ params, body, application, deps }) => {
      await addTags(deps, application.id, params.id, body.tags);
      return { data: await loadSubscriptionView(deps, application.id, params.id) };
    },
  }),
  defineRoute({
    method: "delete",
    path: "/subscriptions/:id/tags",
    summary: "Remove tags by key (unknown keys are ignored)",
    tag: TAG,
    auth: "apiKey",
    params: IdParams,
    body: DeleteTagsBody,
    responses: { 200: { description: "The subscription with its tags", schema: SubscriptionView } },
    handler: async ({ params, body, application, deps }) => {
      await removeTags(deps, application.id, params.id, body.tag_keys);
      return { data: await loadSubscriptionView(deps, application.id, params.id) };
    },
  }),
];
