import type { Knex } from "knex";

/**
 * Two nullable columns on `messages` (no default, so adding them rewrites nothing), and trimmed
 * external user ids.
 *
 * - `request_hash`: sha-256 fingerprint of the send request that carried an Idempotency-Key
 *   (endpoint + validated body, or the resend's source message). The same key with a different
 *   request answers `409 idempotency_key_reused` instead of the first request's messages. Rows from
 *   before this migration have NULL and match any request, as campaigns' `request_hash` does.
 * - `conversion_deadline`: when a received message stops accepting a conversion (SEQ-003
 *   `received --> [*]: 만료`). Set by the receipt, moved earlier by the message workflow when its
 *   window timer fires; the conversion is a conditional update against it under the row lock, so
 *   PostgreSQL alone decides and the workflow only mirrors it. NULL on messages received before
 *   this migration: the API then uses `received_at` + the configured window.
 * - `users.external_id`: every endpoint now trims external ids, but `POST /users/identify` used
 *   to store them verbatim, so a user stored as " u1 " would be unreachable (even by GDPR erasure).
 *   Such ids are trimmed here, unless the trimmed id already exists in that application (two
 *   distinct users; the untrimmed one is left as it was, see docs/data-model.md) or another
 *   untrimmed id of the application trims to the same value (the oldest one is trimmed).
 */
export async function up(knex: Knex): Promise<void> {
  // knex runs a release's pending migrations in one transaction, so every lock taken here is held
  // until the last of them commits: the scan of users comes first, while messages is not locked,
  // and the ALTER (a catalog change, instant once it has its lock) gives up rather than queue
  // behind a long transaction with every send queued behind it.
  await trimExternalIds(knex);
  await knex.raw(`SET LOCAL lock_timeout = '10s'`);
  await knex.raw(`ALTER TABLE messages
    ADD COLUMN request_hash text NULL,
    ADD COLUMN conversion_deadline timestamptz NULL`);
}

/**
 * The characters JavaScript's String.prototype.trim (zod's .trim(), which the API applies) removes:
 * ASCII whitespace and line ends, NBSP, the BOM and Unicode's space separators (U+3000, the
 * ideographic space Korean and Japanese input produce, among them). PostgreSQL's \s is ASCII-only
 * under the C locale.
 */
export const TRIMMED_WHITESPACE = "[\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff]";

/**
 * Trims users' external ids that have whitespace at either end ({@link TRIMMED_WHITESPACE}), one
 * row per trimmed value (the oldest) so the unique key cannot collide, and none whose trimmed id
 * another user of the application already has. Idempotent. Exported for its test, which limits it
 * to its own application (the test database is shared).
 */
export async function trimExternalIds(knex: Knex, applicationId?: string): Promise<number> {
  const WS = TRIMMED_WHITESPACE;
  const result = await knex.raw(`WITH candidates AS (
      SELECT id, application_id, regexp_replace(external_id, '^${WS}+|${WS}+$', '', 'g') AS trimmed,
             row_number() OVER (PARTITION BY application_id, regexp_replace(external_id, '^${WS}+|${WS}+$', '', 'g') ORDER BY created_at, id) AS rank
        FROM users
       WHERE external_id ~ '^${WS}|${WS}$' AND (?::uuid IS NULL OR application_id = ?::uuid)
    )
    UPDATE users u SET external_id = c.trimmed
      FROM candidates c
     WHERE u.id = c.id AND c.rank = 1 AND c.trimmed <> ''
       AND NOT EXISTS (SELECT 1 FROM users o WHERE o.application_id = c.application_id AND o.external_id = c.trimmed)`, [applicationId ?? null, applicationId ?? null]);
  return (result as { rowCount: number }).rowCount;
}

/**
 * Drops the two columns. Trimmed external ids stay trimmed: the previous release's subscriptions
 * and send endpoints already looked users up by the trimmed id.
 */
export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE messages DROP COLUMN IF EXISTS conversion_deadline, DROP COLUMN IF EXISTS request_hash`);
}
