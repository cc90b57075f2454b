import type { Knex } from "knex";

/**
 * Quotas and the double-entry ledger (replaces DESIGN-003 AshDoubleEntry columns
 * daily_used / monthly_used / credit_balance / reset_date on message_quotas).
 *
 * - message_quotas holds the configuration (limits, price, currency).
 * - ledger_accounts holds balances: per-period allowance accounts ('quota:daily:YYYY-MM-DD',
 *   'quota:monthly:YYYY-MM'), a 'credit' account (currency minor units) and system accounts
 *   (application_id NULL, allow_negative) that are the other side of every grant.
 * - ledger_transfers is the append-only journal; every balance change is exactly one transfer
 *   row plus the two balance updates, in one transaction. See docs/data-model.md.
 */

async function run(knex: Knex, statements: readonly string[]): Promise<void> {
  for (const sql of statements) {
    await knex.raw(sql);
  }
}

function updatedAtTrigger(table: string): string {
  return `CREATE TRIGGER ${table}_set_updated_at BEFORE UPDATE ON ${table}
    FOR EACH ROW EXECUTE FUNCTION set_updated_at()`;
}

/** Creates message_quotas, ledger_accounts and the append-only ledger_transfers journal, with their indexes and triggers. */
export async function up(knex: Knex): Promise<void> {
  await run(knex, [
    // ------------------------------------------------------------------ message_quotas
    `CREATE TABLE message_quotas (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       application_id uuid NOT NULL REFERENCES applications (id) ON DELETE CASCADE
         CONSTRAINT message_quotas_application_id_key UNIQUE,
       daily_quota bigint NULL CONSTRAINT message_quotas_daily_quota_check CHECK (daily_quota >= 0),
       monthly_quota bigint NULL CONSTRAINT message_quotas_monthly_quota_check CHECK (monthly_quota >= 0),
       unit_price numeric NULL CONSTRAINT message_quotas_unit_price_check CHECK (unit_price >= 0),
       billing_currency text NOT NULL DEFAULT 'KRW'
         CONSTRAINT message_quotas_billing_currency_check CHECK (billing_currency ~ '^[A-Z]{3}$'),
       timezone text NULL,
       created_at timestamptz NOT NULL DEFAULT now(),
       updated_at timestamptz NOT NULL DEFAULT now()
     )`,
    updatedAtTrigger("message_quotas"),

    // ------------------------------------------------------------------ ledger_accounts
    `CREATE TABLE ledger_accounts (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       application_id uuid NULL REFERENCES applications (id) ON DELETE CASCADE,
       code text NOT NULL,
       kind text NULL,
       unit text NOT NULL,
       balance bigint NOT NULL DEFAULT 0,
       allow_negative boolean NOT NULL DEFAULT false,
       created_at timestamptz NOT NULL DEFAULT now(),
       updated_at timestamptz NOT NULL DEFAULT now(),
       CONSTRAINT ledger_accounts_balance_check CHECK (allow_negative OR balance >= 0)
     )`,
    // One account per (application or system, code). The expression form lets
    // INSERT ... ON CONFLICT ((coalesce(application_id, '00000000-0000-0000-0000-000000000000'::uuid)), code)
    // treat system accounts (application_id NULL) as unique too.
    `CREATE UNIQUE INDEX ledger_accounts_owner_code_key
       ON ledger_accounts ((coalesce(application_id, '00000000-0000-0000-0000-000000000000'::uuid)), code)`,
    // plain lookups (application_id = $1 AND code = $2) and the application FK cascade
    `CREATE INDEX ledger_accounts_application_id_code_idx ON ledger_accounts (application_id, code)`,
    updatedAtTrigger("ledger_accounts"),

    // ------------------------------------------------------------------ ledger_transfers
    // message_id is a soft reference: the journal outlives message retention.
    `CREATE TABLE ledger_transfers (
       id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
       debit_account_id uuid NOT NULL REFERENCES ledger_accounts (id),
       credit_account_id uuid NOT NULL REFERENCES ledger_accounts (id),
       amount bigint NOT NULL CONSTRAINT ledger_transfers_amount_check CHECK (amount > 0),
       idempotency_key text NOT NULL CONSTRAINT ledger_transfers_idempotency_key_key UNIQUE,
       reason text NULL,
       application_id uuid NULL REFERENCES applications (id) ON DELETE CASCADE,
       message_id uuid NULL,
       metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
       created_at timestamptz NOT NULL DEFAULT now(),
       CONSTRAINT ledger_transfers_distinct_accounts CHECK (debit_account_id <> credit_account_id)
     )`,
    `CREATE INDEX ledger_transfers_application_id_created_at_idx ON ledger_transfers (application_id, created_at)`,
    `CREATE INDEX ledger_transfers_debit_account_id_created_at_idx ON ledger_transfers (debit_account_id, created_at)`,
    `CREATE INDEX ledger_transfers_credit_account_id_created_at_idx ON ledger_transfers (credit_account_id, created_at)`,
    `CREATE INDEX ledger_transfers_message_id_idx ON ledger_transfers (message_id) WHERE message_id IS NOT NULL`,
  ]);
}

/** Drops ledger_transfers, ledger_accounts and message_quotas. */
export async function down(knex: Knex): Promise<void> {
  await run(knex, [
    `DROP TABLE IF EXISTS ledger_transfers`,
    `DROP TABLE IF EXISTS ledger_accounts`,
    `DROP TABLE IF EXISTS message_quotas`,
  ]);
}
