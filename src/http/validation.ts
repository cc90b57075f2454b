import { z } from "zod";
import { ApiError } from "./errors";

/** A path parameter that must be a UUID; malformed ids fail validation instead of reaching SQL. */
export const uuidParam = z.uuid({ message: "must be a valid UUID" });

/** `{id}` path parameters, the common case. */
export const IdParams = z.strictObject({ id: uuidParam });

/**
 * Turns zod issues into REF-001's `validation_error` with one message per offending field
 * (dotted paths; `_` for the body as a whole).
 */
export function validationError(error: z.ZodError, where: "body" | "query" | "params"): ApiError {
  const fields: Record<string, string> = {};
  for (const issue of error.issues) {
    const keys = issue.code === "unrecognized_keys" ? issue.keys.map((k) => [...issue.path, k].join(".")) : [issue.path.join(".") || "_"];
    const message = issue.code === "unrecognized_keys" ? "unknown field" : issue.message;
    for (const key of keys) fields[key] ??= message;
  }
  return new ApiError("validation_error", `The request ${where} failed validation`, { in: where, fields });
}

/** Parses input with a schema or throws the REF-001 validation error. */
export function parseOrThrow<S extends z.ZodType>(schema: S, input: unknown, where: "body" | "query" | "params"): z.output<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw validationError(result.error, where);
  return result.data;
}
