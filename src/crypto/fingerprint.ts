import crypto from "node:crypto";
import { stringify as stableStringify } from "safe-stable-stringify";

/**
 * A stable hash of a credential (keys sorted, undefined fields dropped): a rotated key gets a fresh
 * provider and a fresh provider token, and no cache key holds the secret itself.
 */
export function credentialFingerprint(value: unknown): string {
  return crypto.createHash("sha256").update(stableStringify(value ?? null) ?? "null").digest("hex").slice(0, 32);
}
