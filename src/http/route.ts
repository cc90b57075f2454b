import type { Request, Response } from "express";
import type { z } from "zod";
import type { Deps } from "../deps";

/** Who may call a route: an application's API key, the operator's admin token, or anyone. */
export type RouteAuth = "apiKey" | "admin" | "none";

/** The application an API key belongs to, attached to every authenticated request. */
export interface AuthenticatedApplication {
  id: string;
  name: string;
  apiKeyId: string;
  rateLimitTier: "basic" | "premium" | "enterprise";
  timezone: string;
}

/** What a handler receives: validated input, the caller's application and the process dependencies. */
export interface RouteContext<B, Q, P> {
  body: B;
  query: Q;
  params: P;
  /** Present on `apiKey` routes. */
  application: AuthenticatedApplication;
  deps: Deps;
  req: Request;
  res: Response;
}

/** What a handler returns; it becomes `{status: "success", data}` with the given HTTP status. */
export interface RouteResult {
  status?: number;
  data: unknown;
  headers?: Record<string, string>;
}

/** One documented response of a route, for the OpenAPI document. */
export interface RouteResponseDoc {
  description: string;
  schema?: z.ZodType;
}

/**
 * A route declared once: Express mounts it with validation from these schemas, and the OpenAPI
 * document is generated from the same declaration, so the docs cannot drift from the behaviour.
 */
export interface RouteSpec<B extends z.ZodType = z.ZodType, Q extends z.ZodType = z.ZodType, P extends z.ZodType = z.ZodType> {
  method: "get" | "post" | "put" | "patch" | "delete";
  /** Express-style path below /api/v1, e.g. `/subscriptions/:id`. */
  path: string;
  summary: string;
  /** OpenAPI tag (the domain). */
  tag: string;
  auth: RouteAuth;
  body?: B;
  /** A request with no body at all is validated as `{}` (REF-001 shows some POSTs bare); a body that is sent must still be JSON. */
  optionalBody?: boolean;
  query?: Q;
  params?: P;
  /** Documented success response (status → doc); errors are documented globally. */
  responses: Record<number, RouteResponseDoc>;
  /** Extra request headers this route reads (e.g. Idempotency-Key), for the docs. */
  headers?: Array<{ name: string; description: string; required?: boolean }>;
  handler: (ctx: RouteContext<z.output<B>, z.output<Q>, z.output<P>>) => Promise<RouteResult>;
}

/** Declares a route with full type inference of its body, query and params. */
export function defineRoute<B extends z.ZodType = z.ZodUnknown, Q extends z.ZodType = z.ZodUnknown, P extends z.ZodType = z.ZodUnknown>(
  spec: RouteSpec<B, Q, P>,
): RouteSpec {
  return spec as unknown as RouteSpec;
}
