import crypto from "node:crypto";
import type { NextFunction, Request, Response } from "express";
import type { Deps } from "../deps";
import { ApiError } from "./errors";
import { apiKeyLookupPrefix, apiKeyMatches } from "../applications/api-keys";
import type { AuthenticatedApplication } from "./route";

interface ApiKeyRow {
  api_key_id: string;
  key_hash: string;
  application_id: string;
  name: string;
  rate_limit_tier: AuthenticatedApplication["rateLimitTier"];
  timezone: string;
  is_active: boolean;
}

/** Resolves `X-API-Key` to its application, or throws `authentication_failed`. */
export async function authenticateApiKey(deps: Deps, header: string | undefined): Promise<AuthenticatedApplication> {
  if (!header) throw new ApiError("authentication_failed", "The X-API-Key header is missing", { header: "X-API-Key" });
  const prefix = apiKeyLookupPrefix(header.trim());
  if (!prefix) throw new ApiError("authentication_failed", "The API key is invalid", { header: "X-API-Key" });
  const row = await deps
    .db("api_keys as k")
    .join("applications as a", "a.id", "k.application_id")
    .where("k.prefix", prefix)
    .whereNull("k.revoked_at")
    .where((q) => q.whereNull("k.expires_at").orWhere("k.expires_at", ">", deps.db.fn.now()))
    .first<ApiKeyRow | undefined>(
      "k.id as api_key_id",
      "k.key_hash",
      "a.id as application_id",
      "a.name",
      "a.rate_limit_tier",
      "a.timezone",
      "a.is_active",
    );
  if (!row || !apiKeyMatches(header.trim(), row.key_hash)) {
    throw new ApiError("authentication_failed", "The API key is invalid", { header: "X-API-Key" });
  }
  if (!row.is_active) throw new ApiError("permission_denied", "The application is deactivated");
  // Recording use at most once a minute keeps authentication read-only on the hot path.
  deps
    .db("api_keys")
    .where("id", row.api_key_id)
    .where((q) => q.whereNull("last_used_at").orWhereRaw("last_used_at < now() - interval '1 minute'"))
    .update({ last_used_at: deps.db.fn.now() })
    .catch((error: unknown) => deps.logger.warn({ err: error }, "could not record API key use"));
  return {
    id: row.application_id,
    name: row.name,
    apiKeyId: row.api_key_id,
    rateLimitTier: row.rate_limit_tier,
    timezone: row.timezone,
  };
}

/** Express middleware for `apiKey` routes: attaches the application to `res.locals.application`. */
export function requireApiKey(deps: Deps) {
  return (req: Request, res: Response, next: NextFunction): void => {
    authenticateApiKey(deps, req.header("x-api-key"))
      .then((application) => {
        res.locals.application = application;
        next();
      })
      .catch(next);
  };
}

/** Express middleware for operator routes: `Authorization: Bearer $AUTOMATA_ADMIN_TOKEN`. */
export function requireAdmin(deps: Deps) {
  const expected = Buffer.from(deps.config.AUTOMATA_ADMIN_TOKEN ?? "", "utf8");
  return (req: Request, _res: Response, next: NextFunction): void => {
    const match = /^Bearer\s+(.+)$/i.exec(req.header("authorization") ?? "");
    const presented = Buffer.from(match?.[1]?.trim() ?? "", "utf8");
    const valid = expected.length > 0 && presented.length === expected.length && crypto.timingSafeEqual(presented, expected);
    next(valid ? undefined : new ApiError("authentication_failed", "A valid admin bearer token is required", { header: "Authorization" }));
  };
}

/**
 * The SDK (SEQ-001) sends `application_id` in some bodies; the API key decides the tenant, so one
 * naming another application is refused the same way on every route: 403 permission_denied.
 */
export function assertKeyApplication(bodyApplicationId: string | undefined, applicationId: string): void {
  if (bodyApplicationId !== undefined && bodyApplicationId.toLowerCase() !== applicationId) {
    throw new ApiError("permission_denied", "application_id does not match the API key's application", { field: "application_id" });
  }
}
