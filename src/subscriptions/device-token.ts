import type { Deps } from "../deps";
import { FAILURE_CODES } from "../messages/failure-codes";

/** The message failure for a device token this worker's encryption key cannot open. */
export const TOKEN_UNREADABLE = {
  code: FAILURE_CODES.tokenUnreadable,
  message: "the device token cannot be decrypted with this worker's encryption key (a corrupted row, or a worker with another AUTOMATA_ENCRYPTION_KEY)",
} as const;

/** What a device token's ciphertext is bound to: the application whose subscription holds it. */
export function deviceTokenContext(applicationId: string): string {
  return `device-token:${applicationId}`;
}

/**
 * Decrypts a stored device token for sending. A token that will not open fails its own message
 * (`token_unreadable`) instead of throwing: a throw made Temporal retry the send for ever, and in a
 * campaign it held back every message of the chunk. The failure is logged with ids only.
 */
export function openDeviceToken(deps: Pick<Deps, "secrets" | "logger">, ciphertext: string, applicationId: string, ids: Record<string, string>): string | undefined {
  try {
    return deps.secrets.decrypt(ciphertext, deviceTokenContext(applicationId));
  } catch (error) {
    deps.logger.error({ err: error, ...ids }, "device token cannot be decrypted");
    return undefined;
  }
}
