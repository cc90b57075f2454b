import crypto from "node:crypto";
import type { Knex } from "knex";
import { newId } from "../db/ids";

/** Public part of every key; lets operators and secret scanners recognise a leaked key. */
export const API_KEY_PREFIX = "as_";

/** A freshly minted key: `plaintext` is shown to the caller once and never stored. */
export interface MintedApiKey {
  id: string;
  plaintext: string;
  prefix: string;
}

/**
 * SHA-256 is the right hash here (not bcrypt/argon2): keys carry 192 random bits, so there is
 * nothing to brute-force, and a per-request slow hash would cost every API call.
 */
export function hashApiKey(plaintext: string): string {
  return crypto.createHash("sha256").update(plaintext, "utf8").digest("hex");
}

/** Splits `as_<lookup>_<secret>` into its lookup prefix; undefined for anything else. */
export function apiKeyLookupPrefix(plaintext: string): string | undefined {
  const match = /^as_([A-Za-z0-9]{12})_[A-Za-z0-9_-]{32}$/.exec(plaintext);
  return match ? `${API_KEY_PREFIX}${match[1]}` : undefined;
}

/** Creates and stores a new key for an application; returns the plaintext once. */
export async function mintApiKey(db: Knex | Knex.Transaction, applicationId: string, name?: string): Promise<MintedApiKey> {
  const lookup = crypto.randomBytes(9).toString("base64url").replace(/[-_]/g, "x").slice(0, 12);
  const secret = crypto.randomBytes(24).toString("base64url");
  const plaintext = `${API_KEY_PREFIX}${lookup}_${secret}`;
  const id = newId();
  const prefix = `${API_KEY_PREFIX}${lookup}`;
  await db("api_keys").insert({ id, application_id: applicationId, prefix, key_hash: hashApiKey(plaintext), name: name ?? null });
  return { id, plaintext, prefix };
}

/** Compares a presented key to a stored hash without leaking timing. */
export function apiKeyMatches(plaintext: string, storedHash: string): boolean {
  const presented = Buffer.from(hashApiKey(plaintext), "hex");
  const stored = Buffer.from(storedHash, "hex");
  return presented.length === stored.length && crypto.timingSafeEqual(presented, stored);
}
