import type { Knex } from "knex";
import type { Logger } from "pino";
import type { Request, Response, NextFunction, RequestHandler } from "express";
import { rateLimit, type Store, type ClientRateLimitInfo, type Options } from "express-rate-limit";
import { ApiError } from "./errors";
import type { AuthenticatedApplication } from "./route";

/** REF-001 §1.6 tiers: requests per minute per API key. */
export const RATE_LIMIT_TIERS: Record<AuthenticatedApplication["rateLimitTier"], number> = {
  basic: 300,
  premium: 1_000,
  enterprise: 5_000,
};

const WINDOW_MS = 60_000;

/**
 * A fixed-window counter in PostgreSQL so the limit holds across every API instance: one upsert per
 * request returns the hit count for the current minute.
 */
export class PostgresRateLimitStore implements Store {
  /** Counts are shared between instances (express-rate-limit uses this to skip in-memory checks). */
  localKeys = false;
  private lastCleanup = 0;

  constructor(
    private readonly db: Knex,
    private readonly logger: Logger,
  ) {}

  /** Called by express-rate-limit with its options; the window is fixed at one minute. */
  init(_options: Options): void {}

  /** Adds one hit for `key` in the current window and returns the window's total and end. */
  async increment(key: string): Promise<ClientRateLimitInfo> {
    const windowStart = new Date(Math.floor(Date.now() / WINDOW_MS) * WINDOW_MS);
    const result = await this.db.raw<{ rows: Array<{ hits: number }> }>(
      `insert into rate_limit_counters (key, window_start, hits) values (?, ?, 1)
       on conflict (key, window_start) do update set hits = rate_limit_counters.hits + 1
       returning hits`,
      [key, windowStart],
    );
    this.cleanupOccasionally();
    return { totalHits: Number(result.rows[0]?.hits ?? 1), resetTime: new Date(windowStart.getTime() + WINDOW_MS) };
  }

  /** Undoes a hit (express-rate-limit calls this when configured to skip some requests). */
  async decrement(key: string): Promise<void> {
    const windowStart = new Date(Math.floor(Date.now() / WINDOW_MS) * WINDOW_MS);
    await this.db("rate_limit_counters").where({ key, window_start: windowStart }).decrement("hits", 1);
  }

  /** Forgets a key's current window. */
  async resetKey(key: string): Promise<void> {
    await this.db("rate_limit_counters").where({ key }).delete();
  }

  private cleanupOccasionally(): void {
    const now = Date.now();
    if (now - this.lastCleanup < WINDOW_MS) return;
    this.lastCleanup = now;
    void this.db("rate_limit_counters")
      .where("window_start", "<", new Date(now - 2 * WINDOW_MS))
      .delete()
      // Not the request's failure (its count is recorded): the next minute's cleanup retries.
      .catch((error: unknown) => this.logger.warn({ err: error }, "could not delete old rate limit windows"));
  }
}

/** The 429 a key over its allowance gets, with when the allowance comes back. */
function rateLimitExceeded(limit: number, resetSeconds: number | undefined): ApiError {
  return new ApiError("rate_limit_exceeded", "Rate limit exceeded for this API key", {
    limit,
    reset_at: resetSeconds ? new Date(resetSeconds * 1000).toISOString() : undefined,
  });
}

/** Keys this process refused, until their window ends; beyond this many, expired ones are dropped. */
const MAX_REMEMBERED_REFUSALS = 10_000;

/**
 * Per-API-key rate limiting by the application's tier, with REF-001's X-RateLimit-* headers and a
 * REF-001 error body on 429. Must run after API key authentication. A key refused once is refused
 * from memory until its window ends: a client hammering past its allowance then costs this process
 * no database write (the count is shared, the refusal needs no more counting).
 */
export function apiKeyRateLimit(db: Knex, logger: Logger): RequestHandler {
  const keyOf = (res: Response) => `api_key:${(res.locals.application as AuthenticatedApplication).apiKeyId}`;
  const refusedUntil = new Map<string, { resetMs: number; limit: number }>();
  const limiter = rateLimit({
    windowMs: WINDOW_MS,
    limit: (_req: Request, res: Response) => RATE_LIMIT_TIERS[(res.locals.application as AuthenticatedApplication).rateLimitTier],
    keyGenerator: (_req: Request, res: Response) => keyOf(res),
    standardHeaders: false,
    legacyHeaders: true,
    store: new PostgresRateLimitStore(db, logger),
    // Our keys are API key ids, not IP addresses, so the IP-oriented sanity checks do not apply.
    validate: false,
    passOnStoreError: false,
    handler: (_req: Request, res: Response, next: NextFunction) => {
      const reset = res.getHeader("x-ratelimit-reset");
      const limit = Number(res.getHeader("x-ratelimit-limit"));
      if (reset) {
        if (refusedUntil.size >= MAX_REMEMBERED_REFUSALS) {
          for (const [key, refusal] of refusedUntil) if (refusal.resetMs <= Date.now()) refusedUntil.delete(key);
        }
        if (refusedUntil.size < MAX_REMEMBERED_REFUSALS) refusedUntil.set(keyOf(res), { resetMs: Number(reset) * 1000, limit });
      }
      next(rateLimitExceeded(limit, reset ? Number(reset) : undefined));
    },
  });
  return (req: Request, res: Response, next: NextFunction) => {
    const key = keyOf(res);
    const refusal = refusedUntil.get(key);
    // A tier raised since the refusal (the operator upgraded the application) counts again at once.
    const currentLimit = RATE_LIMIT_TIERS[(res.locals.application as AuthenticatedApplication).rateLimitTier];
    if (refusal && Date.now() < refusal.resetMs && currentLimit <= refusal.limit) {
      const resetSeconds = Math.ceil(refusal.resetMs / 1000);
      res.setHeader("X-RateLimit-Limit", String(refusal.limit));
      res.setHeader("X-RateLimit-Remaining", "0");
      res.setHeader("X-RateLimit-Reset", String(resetSeconds));
      res.setHeader("Retry-After", String(Math.max(1, Math.ceil((refusal.resetMs - Date.now()) / 1000))));
      next(rateLimitExceeded(refusal.limit, resetSeconds));
      return;
    }
    if (refusal) refusedUntil.delete(key);
    void limiter(req, res, next);
  };
}
