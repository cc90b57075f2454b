import type { Knex } from "knex";
import type { Logger } from "pino";
import type { SecretBox } from "./secret-box";
import { deviceTokenContext } from "../subscriptions/device-token";
import { providerCredentialsContext } from "../applications/repository";

const UNDEFINED_TABLE = "42P01";

/** Thrown at start-up when this process's AUTOMATA_ENCRYPTION_KEY is not the database's. */
export class EncryptionKeyMismatchError extends Error {
  constructor(reason: string) {
    super(
      `AUTOMATA_ENCRYPTION_KEY is not the key this database's device tokens and provider credentials are encrypted with (${reason}). ` +
        "Start every API and worker with the same key; refusing to start rather than fail every send with token_unreadable.",
    );
    this.name = "EncryptionKeyMismatchError";
  }
}

/**
 * Refuses to run with a key other than the one the database's secrets are sealed with, and records
 * the key's fingerprint on first start. On a database that already holds sealed rows but no
 * fingerprint (it predates the check), the key must open one of the most recent tokens and one of
 * the most recent credentials before it is recorded, so the first process after an upgrade cannot
 * pin a wrong key either.
 */
export async function assertEncryptionKeyMatches(db: Knex, secrets: SecretBox, logger: Logger): Promise<void> {
  const recorded = await recordedFingerprint(db);
  if (recorded === undefined) {
    await assertOpensExistingSecrets(db, secrets);
    await db.raw(`INSERT INTO encryption_key_check (fingerprint) VALUES (?) ON CONFLICT (singleton) DO NOTHING`, [secrets.fingerprint]);
    logger.info({ keyFingerprint: secrets.fingerprint }, "encryption key fingerprint recorded");
  }
  // Read again even after our insert: two first starts with different keys race, one row wins.
  const winner = recorded ?? (await recordedFingerprint(db));
  if (winner !== secrets.fingerprint) {
    throw new EncryptionKeyMismatchError(`this key's fingerprint is ${secrets.fingerprint}, the database's is ${winner}`);
  }
}

async function recordedFingerprint(db: Knex): Promise<string | undefined> {
  try {
    const row = (await db("encryption_key_check").first("fingerprint")) as { fingerprint: string } | undefined;
    return row?.fingerprint;
  } catch (error) {
    if ((error as { code?: string }).code === UNDEFINED_TABLE) {
      throw new Error("the database schema is older than this release (no encryption_key_check table): run the migrations first (node dist/src/cli/migrate.js)");
    }
    throw error;
  }
}

/** Rows of each kind tried: one corrupted row must not lock the right key out, so any one opening is enough. */
const SAMPLE_ROWS = 5;

async function assertOpensExistingSecrets(db: Knex, secrets: SecretBox): Promise<void> {
  const tokens = (await db("subscriptions").whereNotNull("token_ciphertext").orderBy("created_at", "desc").limit(SAMPLE_ROWS).select("application_id", "token_ciphertext as sealed")) as SealedRow[];
  const credentials = (await db("applications").whereNotNull("provider_credentials_ciphertext").orderBy("created_at", "desc").limit(SAMPLE_ROWS).select("id as application_id", "provider_credentials_ciphertext as sealed")) as SealedRow[];
  const samples: Array<[string, SealedRow[], (applicationId: string) => string]> = [
    ["stored device tokens", tokens, deviceTokenContext],
    ["stored provider credentials", credentials, providerCredentialsContext],
  ];
  for (const [what, rows, context] of samples) {
    if (rows.length === 0) continue;
    if (!rows.some((row) => opens(secrets, row.sealed, context(row.application_id)))) throw new EncryptionKeyMismatchError(`the most recent ${what} do not decrypt with it`);
  }
}

/** A sealed value and the application it is bound to. */
interface SealedRow {
  application_id: string;
  sealed: string;
}

function opens(secrets: SecretBox, sealed: string, context: string): boolean {
  try {
    secrets.decrypt(sealed, context);
    return true;
  } catch {
    // A corrupted row, or another key: decided over all the samples.
    return false;
  }
}
