import { createHash } from "node:crypto";
import { stringify as stableStringify } from "safe-stable-stringify";
import { ApiError } from "./errors";

/** The `Idempotency-Key` header's value, trimmed; undefined when absent, `invalid_request` when empty or over 255 characters. */
export function idempotencyKeyOf(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const key = header.trim();
  if (key.length === 0 || key.length > 255) throw new ApiError("invalid_request", "Idempotency-Key must be 1 to 255 characters", { header: "Idempotency-Key" });
  return key;
}

/** sha-256 of a request value: key order and whitespace do not matter, any value does. */
export function fingerprint(value: unknown): string {
  return createHash("sha256").update(stableStringify(value) ?? "").digest("hex");
}
