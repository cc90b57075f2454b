import { z } from "zod";
import { defineRoute, type RouteSpec } from "../http/route";
import { IdParams } from "../http/validation";
import { notFound } from "../http/errors";
import type { Deps } from "../deps";
import { CreateApplicationBody, RotateKeyBody, UpdateApplicationBody } from "./schemas";
import { mintApiKey } from "./api-keys";
import { applyQuota, openProviderCredentials, sealProviderCredentials } from "./repository";
import { fingerprint, idempotencyKeyOf } from "../http/idempotency";
import type { ProviderCredentials } from "./schemas";
import { balanceOf, creditAccount } from "../quota/ledger";
import { newId } from "../db/ids";
import { PaginationQuery, paginate } from "../http/pagination";
import { iso } from "../http/format";

const TAG = "Admin: applications";

const ApplicationView = z.object({
  id: z.string(),
  name: z.string(),
  is_active: z.boolean(),
  rate_limit_tier: z.string(),
  timezone: z.string(),
  campaign_max_per_minute: z.number().nullable(),
  settings: z.record(z.string(), z.unknown()),
  providers: z.object({
    apns: z.object({ team_id: z.string(), key_id: z.string(), bundle_id: z.string(), production: z.boolean() }).nullable(),
    fcm: z.object({ project_id: z.string() }).nullable(),
  }),
  quota: z.object({
    daily_quota: z.number().nullable(),
    monthly_quota: z.number().nullable(),
    unit_price: z.number().nullable(),
    billing_currency: z.string(),
    credit_balance: z.number(),
  }),
  api_keys: z.array(
    z.object({ id: z.string(), prefix: z.string(), name: z.string().nullable(), created_at: z.string(), last_used_at: z.string().nullable(), expires_at: z.string().nullable(), revoked_at: z.string().nullable() }),
  ),
  created_at: z.string(),
  updated_at: z.string(),
});


/**
 * Stored credentials for the admin view and for merging an update: ones that will not open (sealed
 * under another key, or copied from another application's row) read as none, logged, so the
 * operator sees the application and can upload new credentials instead of getting a 500. Sends
 * keep failing on them (retried until the pending timeout), and the worker logs why.
 */
function readableProviderCredentials(deps: Deps, applicationId: string, ciphertext: string | null): ProviderCredentials {
  try {
    return openProviderCredentials(deps.secrets, applicationId, ciphertext);
  } catch (error) {
    deps.logger.error({ err: { message: (error as Error).message }, application_id: applicationId }, "stored provider credentials cannot be decrypted; they read as none until replaced");
    return {};
  }
}

async function viewApplication(deps: Deps, id: string): Promise<z.infer<typeof ApplicationView>> {
  const app = await deps.db("applications").where("id", id).first();
  if (!app) throw notFound("application", id);
  const quota = await deps.db("message_quotas").where("application_id", id).first();
  const credentials = readableProviderCredentials(deps, id, app.provider_credentials_ciphertext);
  const keys = await deps.db("api_keys").where("application_id", id).orderBy("created_at", "desc");
  const currency: string = quota?.billing_currency ?? "KRW";
  return {
    id: app.id,
    name: app.name,
    is_active: app.is_active,
    rate_limit_tier: app.rate_limit_tier,
    timezone: app.timezone,
    campaign_max_per_minute: app.campaign_max_per_minute ?? null,
    settings: app.settings ?? {},
    providers: {
      apns: credentials.apns
        ? { team_id: credentials.apns.team_id, key_id: credentials.apns.key_id, bundle_id: credentials.apns.bundle_id, production: credentials.apns.production }
        : null,
      fcm: credentials.fcm ? { project_id: credentials.fcm.service_account.project_id } : null,
    },
    quota: {
      daily_quota: quota?.daily_quota ?? null,
      monthly_quota: quota?.monthly_quota ?? null,
      unit_price: quota?.unit_price ?? null,
      billing_currency: currency,
      credit_balance: await balanceOf(deps.db, id, creditAccount(id, currency).code),
    },
    api_keys: keys.map((k: { id: string; prefix: string; name: string | null; created_at: Date; last_used_at: Date | null; expires_at: Date | null; revoked_at: Date | null }) => ({
      id: k.id,
      prefix: k.prefix,
      name: k.name,
      created_at: iso(k.created_at)!,
      last_used_at: iso(k.last_used_at),
      expires_at: iso(k.expires_at),
      revoked_at: iso(k.revoked_at),
    })),
    created_at: iso(app.created_at)!,
    updated_at: iso(app.updated_at)!,
  };
}

/** Operator routes: create, inspect and update applications, rotate their API keys. */
export const applicationRoutes: RouteSpec[] = [
  defineRoute({
    method: "post",
    path: "/admin/applications",
    summary: "Create an application and its first API key (shown once)",
    tag: TAG,
    auth: "admin",
    body: CreateApplicationBody,
    responses: { 201: { description: "Created", schema: z.object({ application_id: z.string(), name: z.string(), api_key: z.string() }) } },
    handler: async ({ body, deps }) => {
      const id = newId();
      const apiKey = await deps.db.transaction(async (trx) => {
        await trx("applications").insert({
          id,
          name: body.name,
          settings: JSON.stringify(body.settings ?? {}),
          rate_limit_tier: body.rate_limit_tier ?? "basic",
          timezone: body.timezone ?? "UTC",
          campaign_max_per_minute: body.campaign_max_per_minute ?? null,
          provider_credentials_ciphertext: body.provider_credentials ? sealProviderCredentials(deps.secrets, id, {}, body.provider_credentials) : null,
        });
        await applyQuota(trx, id, body.quota ?? {});
        return mintApiKey(trx, id, "default");
      });
      return { status: 201, data: { application_id: id, name: body.name, api_key: apiKey.plaintext } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/admin/applications",
    summary: "List applications",
    tag: TAG,
    auth: "admin",
    query: PaginationQuery,
    responses: { 200: { description: "Applications" } },
    handler: async ({ query, deps }) => {
      const { rows, pagination } = await paginate<{ id: string; name: string; is_active: boolean; created_at: Date }>(
        deps.db("applications").select("id", "name", "is_active", "created_at"),
        query.page,
        query.per_page,
        // id breaks ties (one transaction's creates share created_at), so no page repeats or skips one.
        [
          { column: "created_at", order: "desc" },
          { column: "id", order: "desc" },
        ],
      );
      return { data: { applications: rows.map((r) => ({ ...r, created_at: iso(r.created_at) })), pagination } };
    },
  }),
  defineRoute({
    method: "get",
    path: "/admin/applications/:id",
    summary: "Get an application (settings, providers without secrets, quota, keys)",
    tag: TAG,
    auth: "admin",
    params: IdParams,
    responses: { 200: { description: "The application", schema: ApplicationView } },
    handler: async ({ params, deps }) => ({ data: await viewApplication(deps, params.id) }),
  }),
  defineRoute({
    method: "patch",
    path: "/admin/applications/:id",
    summary: "Update name, settings, provider credentials, quota, tier, timezone or is_active",
    tag: TAG,
    auth: "admin",
    params: IdParams,
    body: UpdateApplicationBody,
    headers: [
      {
        name: "Idempotency-Key",
        description:
          "Makes a credit top-up (quota.credit_balance) happen once: a repeat with the same key and quota adds nothing more; the same key with a different quota answers 409 idempotency_key_reused. Without it every request adds its credit.",
      },
    ],
    responses: { 200: { description: "The updated application", schema: ApplicationView } },
    handler: async ({ params, body, deps, req }) => {
      const idempotencyKey = idempotencyKeyOf(req.header("idempotency-key"));
      const topUp = idempotencyKey === undefined ? undefined : { idempotencyKey, fingerprint: fingerprint(body.quota ?? null) };
      await deps.db.transaction(async (trx) => {
        const app = await trx("applications").where("id", params.id).forNoKeyUpdate().first();
        if (!app) throw notFound("application", params.id);
        const changes: Record<string, unknown> = {};
        if (body.name !== undefined) changes.name = body.name;
        if (body.settings !== undefined) changes.settings = JSON.stringify({ ...(app.settings ?? {}), ...body.settings });
        if (body.rate_limit_tier !== undefined) changes.rate_limit_tier = body.rate_limit_tier;
        if (body.timezone !== undefined) changes.timezone = body.timezone;
        if (body.campaign_max_per_minute !== undefined) changes.campaign_max_per_minute = body.campaign_max_per_minute;
        if (body.is_active !== undefined) changes.is_active = body.is_active;
        if (body.provider_credentials !== undefined) {
          const current = readableProviderCredentials(deps, params.id, app.provider_credentials_ciphertext);
          changes.provider_credentials_ciphertext = sealProviderCredentials(deps.secrets, params.id, current, body.provider_credentials);
        }
        if (Object.keys(changes).length > 0) await trx("applications").where("id", params.id).update(changes);
        if (body.quota) await applyQuota(trx, params.id, body.quota, topUp);
      });
      return { data: await viewApplication(deps, params.id) };
    },
  }),
  defineRoute({
    method: "post",
    path: "/admin/applications/:id/api-keys",
    summary: "Rotate API keys: issue a new key; existing keys are revoked after the grace period",
    tag: TAG,
    auth: "admin",
    params: IdParams,
    body: RotateKeyBody,
    responses: { 201: { description: "The new key (shown once)", schema: z.object({ api_key: z.string(), id: z.string(), previous_keys_expire_at: z.string() }) } },
    handler: async ({ params, body, deps }) => {
      const result = await deps.db.transaction(async (trx) => {
        const app = await trx("applications").where("id", params.id).forNoKeyUpdate().first("id");
        if (!app) throw notFound("application", params.id);
        const expiresAt = new Date(Date.now() + body.grace_period_seconds * 1000);
        const active = trx("api_keys").where("application_id", params.id).whereNull("revoked_at");
        if (body.grace_period_seconds === 0) await active.update({ revoked_at: trx.fn.now() });
        else await active.where((q) => q.whereNull("expires_at").orWhere("expires_at", ">", expiresAt)).update({ expires_at: expiresAt });
        const minted = await mintApiKey(trx, params.id, body.name);
        return { api_key: minted.plaintext, id: minted.id, previous_keys_expire_at: expiresAt.toISOString() };
      });
      return { status: 201, data: result };
    },
  }),
];
