import type { Knex } from "knex";

/*
 * Quota accounting on the ledger (src/quota/quota.ts) needs two lookups that the journal indexes of
 * 20261122000300_quota_ledger cannot answer without scanning every debit of a period:
 *
 * 1. "How much allowance has been granted to this period account?" Operators may raise or lower a
 *    limit mid-period, so the granted total is the sum of grant transfers into the account minus
 *    revocations out of it. The (credit_account_id, …) / (debit_account_id, …) indexes would also
 *    visit every per-message debit of the period (up to the daily limit), on every send. Two small
 *    partial indexes cover only the handful of grant/revoke rows.
 * 2. "How much of this debit has been refunded already?" Campaign batches are debited in one transfer
 *    and refunded in parts (unsent messages). Each refund now records the transfer it reverses in
 *    `reverses_transfer_id`, which also makes a refund auditable back to its charge.
 */

/** Adds ledger_transfers.reverses_transfer_id and the grant/revoke/reversal indexes. */
export async function up(knex: Knex): Promise<void> {
  for (const sql of [
    // Self-reference, NO ACTION: an application delete cascades the original and its reversals in
    // the same statement, and the check runs at the end of that statement.
    `ALTER TABLE ledger_transfers ADD COLUMN reverses_transfer_id uuid NULL
       REFERENCES ledger_transfers (id)`,
    `ALTER TABLE ledger_transfers ADD CONSTRAINT ledger_transfers_reverses_other CHECK (reverses_transfer_id <> id)`,
    `CREATE INDEX ledger_transfers_reverses_transfer_id_idx ON ledger_transfers (reverses_transfer_id)
       WHERE reverses_transfer_id IS NOT NULL`,
    `CREATE INDEX ledger_transfers_quota_grant_idx ON ledger_transfers (credit_account_id) WHERE reason = 'quota_grant'`,
    `CREATE INDEX ledger_transfers_quota_revoke_idx ON ledger_transfers (debit_account_id) WHERE reason = 'quota_revoke'`,
  ]) {
    await knex.raw(sql);
  }
}

/** Drops what {@link up} added. */
export async function down(knex: Knex): Promise<void> {
  for (const sql of [
    `DROP INDEX IF EXISTS ledger_transfers_quota_revoke_idx`,
    `DROP INDEX IF EXISTS ledger_transfers_quota_grant_idx`,
    `DROP INDEX IF EXISTS ledger_transfers_reverses_transfer_id_idx`,
    `ALTER TABLE ledger_transfers DROP COLUMN IF EXISTS reverses_transfer_id`,
  ]) {
    await knex.raw(sql);
  }
}
