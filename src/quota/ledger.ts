import type { Knex } from "knex";
import { newId } from "../db/ids";
import { isRerunnable } from "../db/availability";
import { afterCommit } from "../metrics/after-commit";
import { ledgerTransfersTotal } from "../metrics/registry";

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

/** An account row that the current transaction has opened and locked `FOR UPDATE`. */
export interface LockedAccount {
  id: string;
  applicationId: string | null;
  code: string;
  unit: string;
  /** Kept current by {@link postTransfer}, so callers can reason about later steps. */
  balance: number;
  allowNegative: boolean;
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
  /** The transfer this one reverses (refunds); see migration 20261122004000_quota. */
  reversesTransferId?: string | null;
}

/** A transfer between accounts the caller already holds locked (see {@link lockAccounts}). */
export type LockedTransferRequest = Omit<TransferRequest, "from" | "to"> & { from: LockedAccount; to: LockedAccount };

/** Outcome of a transfer: applied now, already applied earlier (same key), or refused for lack of funds. */
export type TransferOutcome = { status: "applied"; transferId: string } | { status: "duplicate"; transferId: string } | { status: "insufficient_funds"; balance: number };

/** The owner used for system accounts in the `(coalesce(application_id, …), code)` unique index. */
export const NIL_UUID = "00000000-0000-0000-0000-000000000000";

const ownerKey = (applicationId: string | null, code: string): string => `${applicationId ?? NIL_UUID}|${code}`;

/** A stable map key for an account reference (owner + code). */
export function accountKey(ref: Pick<LedgerAccountRef, "applicationId" | "code">): string {
  return ownerKey(ref.applicationId, ref.code);
}

/** Returns the account's id, creating it (balance 0) when it does not exist yet. */
export async function ensureAccount(trx: Knex | Knex.Transaction, ref: LedgerAccountRef): Promise<string> {
  const ids = await ensureAccounts(trx, [ref]);
  return ids.get(accountKey(ref))!;
}

/**
 * Returns the ids of several accounts (keyed by {@link accountKey}), creating missing ones. Inserts
 * run in key order: two transactions creating the same new accounts then wait for each other in the
 * same order instead of deadlocking.
 */
export async function ensureAccounts(trx: Knex | Knex.Transaction, refs: readonly LedgerAccountRef[]): Promise<Map<string, string>> {
  const unique = [...new Map(refs.map((ref) => [accountKey(ref), ref])).values()].sort((a, b) => (accountKey(a) < accountKey(b) ? -1 : 1));
  const ids = new Map<string, string>();
  if (unique.length === 0) return ids;
  const existing = await selectAccounts(trx, unique);
  for (const row of existing) ids.set(ownerKey(row.application_id, row.code), row.id);
  for (const ref of unique) {
    if (ids.has(accountKey(ref))) continue;
    // ON CONFLICT DO NOTHING waits for a concurrent insert of the same account to commit, and then
    // the follow-up select (a new snapshot under READ COMMITTED) sees it: no unique violation.
    const inserted = await trx.raw<{ rows: Array<{ id: string }> }>(
      `insert into ledger_accounts (id, application_id, code, kind, unit, allow_negative)
       values (?, ?, ?, ?, ?, ?)
       on conflict ((coalesce(application_id, '${NIL_UUID}'::uuid)), code) do nothing
       returning id`,
      [newId(), ref.applicationId, ref.code, ref.kind, ref.unit, ref.allowNegative ?? false],
    );
    const id = inserted.rows[0]?.id ?? (await selectAccounts(trx, [ref]))[0]?.id;
    if (!id) throw new Error(`ledger account ${ref.code} vanished`);
    ids.set(accountKey(ref), id);
  }
  for (const ref of unique) {
    const row = existing.find((r) => ownerKey(r.application_id, r.code) === accountKey(ref));
    if (row && row.unit !== ref.unit) throw new Error(`ledger account ${ref.code} holds ${row.unit}, not ${ref.unit}`);
  }
  return ids;
}

interface AccountRow {
  id: string;
  application_id: string | null;
  code: string;
  unit: string;
  balance: number;
  allow_negative: boolean;
}

async function selectAccounts(trx: Knex | Knex.Transaction, refs: readonly LedgerAccountRef[]): Promise<AccountRow[]> {
  // One "owner = ? and code = any(?)" per owner, so both columns of the unique expression index
  // are index conditions (a row-wise IN only uses the owner and filters every account of it).
  const codesByOwner = new Map<string, string[]>();
  for (const ref of refs) {
    const owner = ref.applicationId ?? NIL_UUID;
    codesByOwner.set(owner, [...(codesByOwner.get(owner) ?? []), ref.code]);
  }
  const clauses = [...codesByOwner.values()].map((codes) => `(coalesce(application_id, '${NIL_UUID}'::uuid) = ?::uuid and code in (${codes.map(() => "?").join(", ")}))`);
  const result = await trx.raw<{ rows: AccountRow[] }>(
    `select id, application_id, code, unit, balance, allow_negative from ledger_accounts where ${clauses.join(" or ")}`,
    [...codesByOwner].flatMap(([owner, codes]) => [owner, ...codes]),
  );
  return result.rows;
}

/**
 * Locks accounts `FOR UPDATE` in id order with one statement and returns them by id. Taking every
 * lock a transaction needs up front, in one global order, is what keeps concurrent transfers (and
 * multi-transfer operations such as a quota debit) free of deadlocks.
 */
export async function lockAccounts(trx: Knex.Transaction, ids: readonly string[]): Promise<Map<string, LockedAccount>> {
  const unique = [...new Set(ids)];
  const locked = new Map<string, LockedAccount>();
  if (unique.length === 0) return locked;
  const rows = await trx("ledger_accounts")
    .whereIn("id", unique)
    .orderBy("id")
    .forUpdate()
    .select<AccountRow[]>("id", "application_id", "code", "unit", "balance", "allow_negative");
  for (const row of rows) {
    locked.set(row.id, { id: row.id, applicationId: row.application_id, code: row.code, unit: row.unit, balance: Number(row.balance), allowNegative: row.allow_negative });
  }
  for (const id of unique) if (!locked.has(id)) throw new Error(`ledger account ${id} does not exist`);
  return locked;
}

/** Opens (creates if needed) and locks accounts; the result is keyed by {@link accountKey}. */
export async function openAccounts(trx: Knex.Transaction, refs: readonly LedgerAccountRef[]): Promise<Map<string, LockedAccount>> {
  const ids = await ensureAccounts(trx, refs);
  const locked = await lockAccounts(trx, [...ids.values()]);
  const byKey = new Map<string, LockedAccount>();
  for (const [key, id] of ids) byKey.set(key, locked.get(id)!);
  return byKey;
}

/**
 * Moves `amount` between two accounts in the caller's transaction: one transfer row and two balance
 * updates. The debit is a conditional update, so concurrent debits can never take an account that
 * forbids it below zero; the unique idempotency key makes a retried transfer a no-op.
 */
export async function transfer(trx: Knex.Transaction, request: TransferRequest): Promise<TransferOutcome> {
  const previous = await trx("ledger_transfers").where("idempotency_key", request.idempotencyKey).first<{ id: string }>("id");
  if (previous) return { status: "duplicate", transferId: previous.id };
  const accounts = await openAccounts(trx, [request.from, request.to]);
  return postTransfer(trx, { ...request, from: accounts.get(accountKey(request.from))!, to: accounts.get(accountKey(request.to))! });
}

/**
 * {@link transfer} for accounts the caller has already opened and locked with {@link openAccounts} or
 * {@link lockAccounts}. Updates the in-memory balances of `from` and `to` when it applies.
 */
export async function postTransfer(trx: Knex.Transaction, request: LockedTransferRequest): Promise<TransferOutcome> {
  const { from, to, amount } = request;
  if (!Number.isSafeInteger(amount) || amount <= 0) throw new Error("transfer amount must be a positive integer");
  if (from.unit !== to.unit) throw new Error(`cannot transfer between units ${from.unit} and ${to.unit}`);
  if (from.id === to.id) throw new Error(`cannot transfer from ${from.code} to itself`);
  const previous = await trx("ledger_transfers").where("idempotency_key", request.idempotencyKey).first<{ id: string }>("id");
  if (previous) return { status: "duplicate", transferId: previous.id };
  // The condition is the real guard (the row lock makes it exact); CHECK (balance >= 0) is the backstop.
  const debited = await trx("ledger_accounts")
    .where("id", from.id)
    .where((q) => q.where("allow_negative", true).orWhere("balance", ">=", amount))
    .update({ balance: trx.raw("balance - ?", [amount]) }, ["balance"]);
  if (debited.length === 0) {
    const account = await trx("ledger_accounts").where("id", from.id).first<{ balance: number }>("balance");
    return { status: "insufficient_funds", balance: Number(account?.balance ?? 0) };
  }
  const credited = await trx("ledger_accounts")
    .where("id", to.id)
    .update({ balance: trx.raw("balance + ?", [amount]) }, ["balance"]);
  const transferId = newId();
  const inserted = await trx("ledger_transfers")
    .insert({
      id: transferId,
      debit_account_id: from.id,
      credit_account_id: to.id,
      amount,
      idempotency_key: request.idempotencyKey,
      reason: request.reason,
      application_id: request.applicationId ?? null,
      message_id: request.messageId ?? null,
      metadata: JSON.stringify(request.metadata ?? {}),
      ...(request.reversesTransferId ? { reverses_transfer_id: request.reversesTransferId } : {}),
    })
    .onConflict("idempotency_key")
    .ignore()
    .returning("id");
  if (inserted.length === 0) {
    // A concurrent transaction committed the same key first: this whole transaction must not apply.
    throw new DuplicateTransferError(request.idempotencyKey);
  }
  // Counted when the outermost transaction commits (ledger transactions are retried on conflicts).
  afterCommit(trx, () => ledgerTransfersTotal.inc({ reason: request.reason }));
  from.balance = Number(debited[0]!.balance);
  if (credited[0]) to.balance = Number(credited[0].balance);
  return { status: "applied", transferId };
}

/** A conflict with a concurrent transaction: the whole ledger transaction should be re-run ({@link withLedgerRetry}). */
export class LedgerConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LedgerConflictError";
  }
}

/** Raised when a concurrent transfer with the same idempotency key won the race; retrying reports "duplicate". */
export class DuplicateTransferError extends LedgerConflictError {
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

/**
 * True for errors after which re-running the whole ledger transaction is safe and may succeed: a
 * rerunnable abort (deadlock, serialization failure), and a unique violation lost to a concurrent
 * insert of the same row.
 */
export function isRetryableLedgerError(error: unknown): boolean {
  if (error instanceof LedgerConflictError || isRerunnable(error)) return true;
  return (error as { code?: unknown } | null)?.code === "23505";
}

/**
 * Runs `attempt` (which should open its own transaction) and re-runs it after a retryable error
 * ({@link isRetryableLedgerError}), at most `maxAttempts` times, with a short jittered backoff.
 */
export async function withLedgerRetry<T>(attempt: () => Promise<T>, maxAttempts = 6): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (tries >= maxAttempts || !isRetryableLedgerError(error)) throw error;
      const delay = Math.min(200, 5 * 2 ** tries) * (0.5 + Math.random());
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** The system account money enters the ledger from when an operator tops up a credit balance. */
export function creditSourceAccount(applicationId: string, currency: string): LedgerAccountRef {
  // Per application, like the quota contra accounts: deleting an application removes both sides
  // of its top-ups, so every unit's balances still sum to zero.
  return { applicationId, code: `system:credit_source:${currency}`, kind: "system", unit: currency, allowNegative: true };
}

/** An application's prepaid credit balance (minor units of its billing currency). */
export function creditAccount(applicationId: string, currency: string): LedgerAccountRef {
  return { applicationId, code: `credit:${currency}`, kind: "credit", unit: currency };
}

/** The unit of message allowance accounts. */
export const MESSAGES_UNIT = "messages";

/** An application's remaining allowance for one period: `quota:daily:<YYYY-MM-DD>` or `quota:monthly:<YYYY-MM>`. */
export function allowanceAccount(applicationId: string, period: "daily" | "monthly", key: string): LedgerAccountRef {
  return { applicationId, code: `quota:${period}:${key}`, kind: `quota_${period}`, unit: MESSAGES_UNIT };
}

/**
 * Where an application's allowances come from. Contra accounts are per application (kind "system",
 * `application_id` set) rather than global rows, so sends of different tenants never queue on one
 * hot balance row, and deleting an application cascades both sides of its transfers.
 */
export function quotaGrantAccount(applicationId: string): LedgerAccountRef {
  return { applicationId, code: "system:quota_grant", kind: "system", unit: MESSAGES_UNIT, allowNegative: true };
}

/** Where an application's consumed allowance goes (per application, see {@link quotaGrantAccount}). */
export function quotaConsumedAccount(applicationId: string): LedgerAccountRef {
  return { applicationId, code: "system:quota_consumed", kind: "system", unit: MESSAGES_UNIT, allowNegative: true };
}

/** Where an application's per-message charges go (per application, see {@link quotaGrantAccount}). */
export function revenueAccount(applicationId: string, currency: string): LedgerAccountRef {
  return { applicationId, code: `system:revenue:${currency}`, kind: "system", unit: currency, allowNegative: true };
}
