import type { Knex } from "knex";
import { newId } from "../db/ids";

/** An account in the double-entry ledger (`ledger_accounts`). */
export interface LedgerAccountRef {
  /** null for system-wide accounts. */
  applicationId: string | null;
  code: string;
  /** "messages" or an ISO currency code (amounts in minor units). */
  unit: string;
  kind: string;
  /** System source/sink accounts may go negative; tenant allowances never do. */
  allowNegative?: boolean;
}

/** One movement of `amount` from one account to another, identified by an idempotency key. */
export interface TransferRequest {
  from: LedgerAccountRef;
  to: LedgerAccountRef;
  amount: number;
  idempotencyKey: string;
  reason: string;
  applicationId?: string | null;
  messageId?: string | null;
  metadata?: Record<string, unknown>;
}

/** Outcome of a transfer: applied now, already applied earlier (same key), or refused for lack of funds. */
export type TransferOutcome = { status: "applied"; transferId: string } | { status: "duplicate"; transferId: string } | { status: "insufficient_funds"; balance: number };

const NIL_UUID = "00000000-0000-0000-0000-000000000000";

/** Returns the account's id, creating it (balance 0) when it does not exist yet. */
export async function ensureAccount(trx: Knex | Knex.Transaction, ref: LedgerAccountRef): Promise<string> {
  const inserted = await trx.raw<{ rows: Array<{ id: string }> }>(
    `insert into ledger_accounts (id, application_id, code, kind, unit, allow_negative)
     values (?, ?, ?, ?, ?, ?)
     on conflict (coalesce(application_id, '${NIL_UUID}'::uuid), code) do nothing
     returning id`,
    [newId(), ref.applicationId, ref.code, ref.kind, ref.unit, ref.allowNegative ?? false],
  );
  if (inserted.rows[0]) return inserted.rows[0].id;
  const existing = await trx("ledger_accounts")
    .whereRaw(`coalesce(application_id, '${NIL_UUID}'::uuid) = coalesce(?::uuid, '${NIL_UUID}'::uuid)`, [ref.applicationId])
    .where("code", ref.code)
    .first<{ id: string }>("id");
  if (!existing) throw new Error(`ledger account ${ref.code} vanished`);
  return existing.id;
}

/**
 * Moves `amount` between two accounts in the caller's transaction: one transfer row and two balance
 * updates. The debit is a conditional update, so concurrent debits can never take an account that
 * forbids it below zero; the unique idempotency key makes a retried transfer a no-op.
 */
export async function transfer(trx: Knex.Transaction, request: TransferRequest): Promise<TransferOutcome> {
  if (!Number.isInteger(request.amount) || request.amount <= 0) throw new Error("transfer amount must be a positive integer");
  if (request.from.unit !== request.to.unit) throw new Error(`cannot transfer between units ${request.from.unit} and ${request.to.unit}`);
  const previous = await trx("ledger_transfers").where("idempotency_key", request.idempotencyKey).first<{ id: string }>("id");
  if (previous) return { status: "duplicate", transferId: previous.id };
  const [fromId, toId] = [await ensureAccount(trx, request.from), await ensureAccount(trx, request.to)];
  // Lock both rows in a fixed order so two opposite transfers cannot deadlock.
  await trx("ledger_accounts").whereIn("id", [fromId, toId]).orderBy("id").forUpdate().select("id");
  const debited = await trx("ledger_accounts")
    .where("id", fromId)
    .where((q) => q.where("allow_negative", true).orWhere("balance", ">=", request.amount))
    .update({ balance: trx.raw("balance - ?", [request.amount]) }, ["balance"]);
  if (debited.length === 0) {
    const account = await trx("ledger_accounts").where("id", fromId).first<{ balance: number }>("balance");
    return { status: "insufficient_funds", balance: Number(account?.balance ?? 0) };
  }
  await trx("ledger_accounts").where("id", toId).update({ balance: trx.raw("balance + ?", [request.amount]) });
  const transferId = newId();
  const inserted = await trx("ledger_transfers")
    .insert({
      id: transferId,
      debit_account_id: fromId,
      credit_account_id: toId,
      amount: request.amount,
      idempotency_key: request.idempotencyKey,
      reason: request.reason,
      application_id: request.applicationId ?? null,
      message_id: request.messageId ?? null,
      metadata: JSON.stringify(request.metadata ?? {}),
    })
    .onConflict("idempotency_key")
    .ignore()
    .returning("id");
  if (inserted.length === 0) {
    // A concurrent transaction committed the same key first: this whole transaction must not apply.
    throw new DuplicateTransferError(request.idempotencyKey);
  }
  return { status: "applied", transferId };
}

/** Raised when a concurrent transfer with the same idempotency key won the race; retrying reports "duplicate". */
export class DuplicateTransferError extends Error {
  constructor(readonly idempotencyKey: string) {
    super(`transfer ${idempotencyKey} was applied concurrently`);
    this.name = "DuplicateTransferError";
  }
}

/** Current balance of an account; 0 when it was never opened. */
export async function balanceOf(db: Knex | Knex.Transaction, applicationId: string | null, code: string): Promise<number> {
  const row = await db("ledger_accounts")
    .whereRaw(`coalesce(application_id, '${NIL_UUID}'::uuid) = coalesce(?::uuid, '${NIL_UUID}'::uuid)`, [applicationId])
    .where("code", code)
    .first<{ balance: number }>("balance");
  return Number(row?.balance ?? 0);
}

/** The system account money enters the ledger from when an operator tops up a credit balance. */
export function creditSourceAccount(currency: string): LedgerAccountRef {
  return { applicationId: null, code: `system:credit_source:${currency}`, kind: "system", unit: currency, allowNegative: true };
}

/** An application's prepaid credit balance (minor units of its billing currency). */
export function creditAccount(applicationId: string, currency: string): LedgerAccountRef {
  return { applicationId, code: `credit:${currency}`, kind: "credit", unit: currency };
}
