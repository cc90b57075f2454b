import { z } from "zod";
import { ApiError } from "./errors";

/** The last instant {@link apiInstant} accepts. */
const LATEST_INSTANT_MS = Date.parse("9999-12-31T23:59:59.999Z");

/**
 * An ISO 8601 instant with an offset, between 1970 and the end of 9999 in UTC. An offset can carry
 * 9999-12-31T23:59-23:59 into year 10000, which the API would then answer as "+010000-…": no
 * RFC 3339, and refused by this very schema when a client sends it back.
 */
export const apiInstant = z.iso
  .datetime({ offset: true })
  .refine((value) => {
    const ms = Date.parse(value);
    return ms >= 0 && ms <= LATEST_INSTANT_MS;
  }, "must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z");

/**
 * A UUID (path parameter or field), lower-cased: PostgreSQL matches an id in either case, but the
 * code also compares ids as strings and builds workflow ids from them (`message-<id>`), so an
 * upper-case id would find the row and miss everything else. Malformed ids fail validation
 * instead of reaching SQL.
 */
export const uuidField = z.uuid({ message: "must be a valid UUID" }).transform((id) => id.toLowerCase());

/** Largest value of a PostgreSQL `integer` column (template versions and the like); zod's `.int()` alone allows 2^53. */
export const PG_INTEGER_MAX = 2_147_483_647;

/**
 * A whole number in a query string, written in plain decimal digits. `z.coerce.number()` also took
 * `1e3`, `0x10`, ` 5 ` and `5.0`, so two spellings could name one page or version (and caches and
 * logs saw different URLs for it).
 */
export function queryInteger(min: number, max: number = Number.MAX_SAFE_INTEGER) {
  return z
    .string()
    .regex(/^\d{1,16}$/, "must be a whole number written in digits")
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
}

/** `{id}` path parameters, the common case. */
export const IdParams = z.strictObject({ id: uuidField });

/**
 * Turns zod issues into REF-001's `validation_error` with one message per offending field
 * (dotted paths; `_` for the body as a whole).
 */
export function validationError(error: z.ZodError, where: "body" | "query" | "params"): ApiError {
  const fields = fieldMessages();
  for (const issue of error.issues) {
    const keys = issue.code === "unrecognized_keys" ? issue.keys.map((k) => [...issue.path, k].join(".")) : [issue.path.join(".") || "_"];
    const message = issue.code === "unrecognized_keys" ? "unknown field" : issue.message;
    for (const key of keys) fields[key] ??= message;
  }
  return new ApiError("validation_error", `The request ${where} failed validation`, { in: where, fields });
}

/**
 * An empty field → message map without a prototype: on `{}` a field named `constructor` or
 * `__proto__` finds an inherited value, `??=` records nothing, and the error names no field.
 */
function fieldMessages(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

/** Parses input with a schema or throws the REF-001 validation error. */
export function parseOrThrow<S extends z.ZodType>(schema: S, input: unknown, where: "body" | "query" | "params"): z.output<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw validationError(result.error, where);
  return result.data;
}

/** Deepest nesting accepted in a request; far beyond any real payload, well short of a stack overflow anywhere downstream. */
export const MAX_INPUT_DEPTH = 32;

/**
 * Why a string cannot be stored, or null: PostgreSQL text and jsonb refuse U+0000, and an
 * unpaired UTF-16 surrogate has no UTF-8 encoding, so either would surface as a database error
 * (a 500) after part of the work was done.
 */
function unstorableText(text: string): string | null {
  if (text.includes("\u0000")) return "must not contain the NUL character (U+0000)";
  if (!text.isWellFormed()) return "must be valid Unicode (it contains an unpaired surrogate)";
  return null;
}

/**
 * Finds text PostgreSQL would refuse (in keys and values) and nesting deeper than
 * {@link MAX_INPUT_DEPTH}, anywhere in a request's body, query or params, and refuses the request
 * with REF-001's `validation_error` naming each offending field. Runs before the route's schema,
 * so free-form fields (`data`, `tags`, `properties`) are covered too. A `__proto__` key is refused
 * as well: zod's records drop it without an error, so a tag criterion so named vanished and the
 * campaign went to everyone.
 */
export function assertStorableInput(input: unknown, where: "body" | "query" | "params"): void {
  const fields = fieldMessages();
  const visit = (value: unknown, path: string[], depth: number): void => {
    if (typeof value === "string") {
      const problem = unstorableText(value);
      if (problem !== null) fields[path.join(".") || "_"] ??= problem;
      return;
    }
    // JSON's 1e309 parses to Infinity, which JSON.stringify writes as null: stored and sent as null.
    if (typeof value === "number" && !Number.isFinite(value)) {
      fields[path.join(".") || "_"] ??= "must be a finite number";
      return;
    }
    if (value === null || typeof value !== "object") return;
    if (depth >= MAX_INPUT_DEPTH) {
      fields[path.join(".") || "_"] ??= `must not be nested more than ${MAX_INPUT_DEPTH} levels deep`;
      return;
    }
    for (const [key, child] of Object.entries(value)) {
      const keyProblem = key === "__proto__" ? "is reserved" : unstorableText(key);
      if (keyProblem !== null) fields[[...path, key].join(".")] ??= `field name ${keyProblem}`;
      visit(child, [...path, key], depth + 1);
    }
  };
  visit(input, [], 0);
  if (Object.keys(fields).length > 0) throw new ApiError("validation_error", `The request ${where} failed validation`, { in: where, fields });
}
