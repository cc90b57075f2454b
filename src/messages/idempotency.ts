import { ApiError } from "../http/errors";
import { fingerprint } from "../http/idempotency";

/**
 * Fingerprint of one idempotent request: which endpoint, and what it asked for (the validated body,
 * or the resend's source message). Key order and whitespace do not matter, any value does; the
 * endpoint is part of it because one Idempotency-Key space is shared by every send endpoint.
 */
export function requestFingerprint(endpoint: string, request: unknown): string {
  return fingerprint({ endpoint, request });
}

/**
 * Refuses a request whose Idempotency-Key already belongs to a different request (409
 * `idempotency_key_reused`). Rows stored before fingerprints existed (NULL) match any request, and
 * so does a caller that does not fingerprint (`requestHash` undefined).
 */
export function assertSameRequest(previous: ReadonlyArray<{ id: string; request_hash: string | null }>, requestHash: string | undefined): void {
  if (requestHash === undefined) return;
  const other = previous.find((row) => row.request_hash !== null && row.request_hash !== requestHash);
  if (other) {
    throw new ApiError("idempotency_key_reused", undefined, { header: "Idempotency-Key", message_ids: previous.map((row) => row.id) });
  }
}
