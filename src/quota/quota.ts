/**
 * Message quota accounting on the double-entry ledger (docs/data-model.md, "Ledger").
 *
 * Accounts (all owned by the application; contra accounts are per application, see ledger.ts):
 *   quota:daily:<YYYY-MM-DD>, quota:monthly:<YYYY-MM>   remaining allowance of one local period
 *   credit:<CUR>                                         prepaid credit (minor units)
 *   system:quota_grant                                   source of allowances (may go negative)
 *   system:quota_consumed                                sink of used allowance (may go negative)
 *   system:revenue:<CUR>                                 sink of per-message charges
 *
 * Idempotency keys (ledger_transfers.idempotency_key is globally unique):
 *   grant:<app>:<daily|monthly>:<period>:<n>   n-th allowance adjustment of a period account
 *                                              (reason quota_grant, or quota_revoke when lowering)
 *   debit:daily:<message>, debit:monthly:<message>, charge:<message>       one message
 *   debit:daily:batch:<app>:<batch>, debit:monthly:batch:<app>:<batch>,
 *   charge:batch:<app>:<batch>                                             one campaign batch
 *   refund:<original key>                      full reversal of a message's transfer
 *   refund:<original key>:<refund id>          partial reversal of a batch transfer
 *   refund:<original key>:unsent-<n>           a batch's refunds brought up to n unsent messages
 *
 * "used" of a period is never stored: it is granted − balance of that period's account.
 */
import type { Knex } from "knex";
import { quotaRejectionsTotal } from "../metrics/registry";
import { ApiError, notFound } from "../http/errors";
import { periodKeys, resolveTimeZone, type PeriodKeys } from "./periods";
import {
  LedgerConflictError,
  DuplicateTransferError,
  accountKey,
  allowanceAccount,
  creditAccount,
  lockAccounts,
  openAccounts,
  postTransfer,
  quotaConsumedAccount,
  quotaGrantAccount,
  revenueAccount,
  withLedgerRetry,
  type LedgerAccountRef,
  type LockedAccount,
  type TransferOutcome,
} from "./ledger";

/** An allowance period. */
export type QuotaPeriod = "daily" | "monthly";

/** The debit was refused; the fields are REF-001's `quota_exceeded` details. */
export type QuotaExhausted =
  | { status: "exhausted"; period: QuotaPeriod; limit: number; used: number; resetAt: Date }
  | {
      status: "exhausted";
      period: "credit";
      /** Credit has no limit or reset: it stays exhausted until an operator tops it up. */
      limit: null;
      used: null;
      resetAt: null;
      balance: number;
      unitPrice: number;
      currency: string;
      /** The charge that did not fit. */
      required: number;
    };

/** Outcome of {@link debitMessageQuota} / {@link debitBatchQuota}. */
export type DebitResult = { status: "debited" | "already_debited" | "unlimited" } | QuotaExhausted;

/** Outcome of a refund. */
export type RefundResult = { status: "refunded"; units: number } | { status: "already_refunded" | "not_debited" };

/** One allowance in {@link quotaStatus} (snake_case: it is served by the API as is). */
export interface AllowanceStatus {
  limit: number;
  used: number;
  remaining: number;
  reset_at: string;
}

/** Prepaid credit in {@link quotaStatus}. */
export interface CreditStatus {
  balance: number;
  unit_price: number | null;
  currency: string;
}

/** Current quota position of an application, read from the ledger. */
export interface QuotaStatus {
  daily: AllowanceStatus | null;
  monthly: AllowanceStatus | null;
  credit: CreditStatus | null;
}

interface QuotaConfig {
  daily: number | null;
  monthly: number | null;
  unitPrice: number | null;
  currency: string;
  timezone: string;
}

interface PeriodLimit {
  period: QuotaPeriod;
  key: string;
  limit: number;
  resetAt: Date;
  account: LedgerAccountRef;
}

interface TransferRow {
  id: string;
  idempotency_key: string;
  application_id: string | null;
  debit_account_id: string;
  credit_account_id: string;
  amount: number;
  message_id: string | null;
  metadata: Record<string, unknown>;
}

// Batch and refund ids become part of idempotency keys, whose parts are separated by ':'.
const KEY_PART = /^[A-Za-z0-9._-]{1,200}$/;

/** Raised inside a debit transaction to roll it back and report the refusal. */
class QuotaRefused extends Error {
  constructor(readonly result: QuotaExhausted) {
    super(`quota exhausted: ${result.period}`);
    this.name = "QuotaRefused";
  }
}

function assertUnits(units: number): void {
  if (!Number.isSafeInteger(units) || units <= 0) throw new RangeError(`units must be a positive integer, got ${units}`);
}

function assertKeyPart(name: string, value: string): void {
  if (!KEY_PART.test(value)) throw new RangeError(`${name} must be 1-200 characters of A-Z a-z 0-9 . _ -`);
}

async function loadQuotaConfig(db: Knex | Knex.Transaction, applicationId: string): Promise<QuotaConfig> {
  const row = await db("applications as a")
    .leftJoin("message_quotas as q", "q.application_id", "a.id")
    .where("a.id", applicationId)
    .first<
      | { daily_quota: number | null; monthly_quota: number | null; unit_price: number | null; billing_currency: string | null; quota_timezone: string | null; app_timezone: string | null }
      | undefined
    >("q.daily_quota", "q.monthly_quota", "q.unit_price", "q.billing_currency", "q.timezone as quota_timezone", "a.timezone as app_timezone");
  if (!row) throw notFound("application", applicationId);
  const num = (value: number | string | null): number | null => (value === null ? null : Number(value));
  return {
    daily: num(row.daily_quota),
    monthly: num(row.monthly_quota),
    unitPrice: num(row.unit_price),
    currency: row.billing_currency ?? "KRW",
    // An unknown zone in the database falls back to the next candidate rather than blocking every
    // send of the application; the API validates zones on input.
    timezone: resolveTimeZone(row.quota_timezone, row.app_timezone),
  };
}

function configuredLimits(applicationId: string, config: QuotaConfig, periods: PeriodKeys): PeriodLimit[] {
  const limits: PeriodLimit[] = [];
  if (config.daily !== null) {
    limits.push({ period: "daily", key: periods.day, limit: config.daily, resetAt: periods.dayResetAt, account: allowanceAccount(applicationId, "daily", periods.day) });
  }
  if (config.monthly !== null) {
    limits.push({ period: "monthly", key: periods.month, limit: config.monthly, resetAt: periods.monthResetAt, account: allowanceAccount(applicationId, "monthly", periods.month) });
  }
  return limits;
}

/** The charge for `units` messages in minor units; fractional prices are rounded once per debit. */
function chargeFor(units: number, unitPrice: number | null): number {
  if (unitPrice === null || unitPrice <= 0) return 0;
  const charge = Math.round(units * unitPrice);
  if (!Number.isSafeInteger(charge)) throw new RangeError(`charge for ${units} units is too large`);
  return charge;
}

/**
 * Allowance granted to a period account so far (grants in − revocations out) and the number of
 * those adjustments. Served by the partial indexes of migration 20261122004000_quota, so it reads
 * only grant rows, never the period's debits.
 */
async function grantState(db: Knex | Knex.Transaction, accountId: string): Promise<{ granted: number; adjustments: number }> {
  const result = await db.raw<{ rows: Array<{ granted: number; adjustments: number }> }>(
    `select g.total - r.total as granted, g.n + r.n as adjustments
       from (select count(*)::int as n, coalesce(sum(amount), 0)::bigint as total
               from ledger_transfers where credit_account_id = ? and reason = 'quota_grant') g,
            (select count(*)::int as n, coalesce(sum(amount), 0)::bigint as total
               from ledger_transfers where debit_account_id = ? and reason = 'quota_revoke') r`,
    [accountId, accountId],
  );
  const row = result.rows[0];
  return { granted: Number(row?.granted ?? 0), adjustments: Number(row?.adjustments ?? 0) };
}

/**
 * Brings a locked period account to the current limit and returns the granted total: grants the
 * difference when the limit is above what was granted (a new period, or a raised limit), and when
 * the limit was lowered moves back the excess, but at most the balance, because used allowance
 * cannot be taken back. The caller holds the account's row lock, so the sequence number in the key
 * is free; a concurrent twin would collide on it and be retried.
 */
async function adjustAllowance(trx: Knex.Transaction, applicationId: string, limit: PeriodLimit, allowance: LockedAccount, grant: LockedAccount): Promise<number> {
  const { granted, adjustments } = await grantState(trx, allowance.id);
  const key = `grant:${applicationId}:${limit.period}:${limit.key}:${adjustments + 1}`;
  const metadata = { period: limit.period, period_key: limit.key, limit: limit.limit, granted_before: granted };
  let moved: { from: LockedAccount; to: LockedAccount; amount: number; reason: string } | null = null;
  if (granted < limit.limit) moved = { from: grant, to: allowance, amount: limit.limit - granted, reason: "quota_grant" };
  else if (granted > limit.limit && allowance.balance > 0) moved = { from: allowance, to: grant, amount: Math.min(allowance.balance, granted - limit.limit), reason: "quota_revoke" };
  if (!moved) return granted;
  const outcome = await postTransfer(trx, { ...moved, idempotencyKey: key, applicationId, metadata });
  if (outcome.status === "duplicate") throw new DuplicateTransferError(key);
  if (outcome.status === "insufficient_funds") throw new Error(`allowance adjustment ${key} refused although the account is locked`);
  return moved.reason === "quota_grant" ? granted + moved.amount : granted - moved.amount;
}

/** Transfers already recorded under `keys`; refuses keys that belong to another application. */
async function findTransfers(db: Knex | Knex.Transaction, applicationId: string, keys: readonly string[]): Promise<TransferRow[]> {
  const rows = await db("ledger_transfers")
    .whereIn("idempotency_key", keys)
    .select<TransferRow[]>("id", "idempotency_key", "application_id", "debit_account_id", "credit_account_id", "amount", "message_id", "metadata");
  for (const row of rows) {
    if (row.application_id !== applicationId) throw new Error(`ledger transfer ${row.idempotency_key} belongs to another application`);
  }
  return rows;
}

// Credit first (only a top-up helps), then the period that resets last: the reported reset_at is
// when sending can actually resume.
const BINDING_ORDER: Record<QuotaExhausted["period"], number> = { credit: 0, monthly: 1, daily: 2 };

function mostBinding(refusals: QuotaExhausted[]): QuotaExhausted {
  return [...refusals].sort((a, b) => BINDING_ORDER[a.period] - BINDING_ORDER[b.period])[0]!;
}

interface DebitSpec {
  applicationId: string;
  units: number;
  now: Date;
  messageId: string | null;
  keys: { daily: string; monthly: string; charge: string };
  metadata: Record<string, unknown>;
}

async function debitInTransaction(trx: Knex.Transaction, spec: DebitSpec): Promise<DebitResult> {
  const { applicationId, units } = spec;
  const debitKeys = [spec.keys.daily, spec.keys.monthly, spec.keys.charge];
  // Cheap answer for a retried call, before creating or locking anything.
  if ((await findTransfers(trx, applicationId, debitKeys)).length > 0) return { status: "already_debited" };

  const config = await loadQuotaConfig(trx, applicationId);
  const periods = periodKeys(spec.now, config.timezone);
  const limits = configuredLimits(applicationId, config, periods);
  const charge = chargeFor(units, config.unitPrice);
  if (limits.length === 0 && charge === 0) return { status: "unlimited" };

  const grantRef = quotaGrantAccount(applicationId);
  const consumedRef = quotaConsumedAccount(applicationId);
  const creditRef = creditAccount(applicationId, config.currency);
  const revenueRef = revenueAccount(applicationId, config.currency);
  const refs = [...limits.map((l) => l.account), ...(limits.length > 0 ? [grantRef, consumedRef] : []), ...(charge > 0 ? [creditRef, revenueRef] : [])];
  const accounts = await openAccounts(trx, refs);
  const account = (ref: LedgerAccountRef): LockedAccount => accounts.get(accountKey(ref))!;

  // With every account of this debit locked, a concurrent debit of the same message has either
  // committed (its transfers are visible now, READ COMMITTED) or has not started: check again.
  if ((await findTransfers(trx, applicationId, debitKeys)).length > 0) return { status: "already_debited" };
  // Re-read the limits under the locks, so an in-flight debit that read the configuration before
  // an operator lowered a limit cannot re-grant the old limit after a newer debit revoked it.
  const fresh = await loadQuotaConfig(trx, applicationId);
  const freshCharge = chargeFor(units, fresh.unitPrice);
  if ((fresh.daily === null) !== (config.daily === null) || (fresh.monthly === null) !== (config.monthly === null) || fresh.currency !== config.currency || fresh.timezone !== config.timezone || (freshCharge > 0) !== (charge > 0)) {
    throw new LedgerConflictError("quota configuration changed during the debit");
  }
  const freshLimits = configuredLimits(applicationId, fresh, periods);

  const refusals: QuotaExhausted[] = [];
  for (const limit of freshLimits) {
    const allowance = account(limit.account);
    const granted = await adjustAllowance(trx, applicationId, limit, allowance, account(grantRef));
    if (allowance.balance < units) refusals.push({ status: "exhausted", period: limit.period, limit: limit.limit, used: granted - allowance.balance, resetAt: limit.resetAt });
  }
  const credit = freshCharge > 0 ? account(creditRef) : null;
  if (credit && credit.balance < freshCharge) {
    refusals.push({ status: "exhausted", period: "credit", limit: null, used: null, resetAt: null, balance: credit.balance, unitPrice: fresh.unitPrice!, currency: fresh.currency, required: freshCharge });
  }
  if (refusals.length > 0) throw new QuotaRefused(mostBinding(refusals));

  for (const limit of freshLimits) {
    const key = limit.period === "daily" ? spec.keys.daily : spec.keys.monthly;
    const outcome = await postTransfer(trx, {
      from: account(limit.account),
      to: account(consumedRef),
      amount: units,
      idempotencyKey: key,
      reason: "quota_debit",
      applicationId,
      messageId: spec.messageId,
      metadata: { ...spec.metadata, units, period: limit.period, period_key: limit.key },
    });
    // Neither can happen while the accounts are locked and the keys were checked; both stay safe.
    if (outcome.status === "duplicate") throw new DuplicateTransferError(key);
    if (outcome.status === "insufficient_funds") throw new Error(`debit ${key} refused although the account is locked`);
  }
  if (credit) {
    const outcome = await postTransfer(trx, {
      from: credit,
      to: account(revenueRef),
      amount: freshCharge,
      idempotencyKey: spec.keys.charge,
      reason: "quota_charge",
      applicationId,
      messageId: spec.messageId,
      metadata: { ...spec.metadata, units, unit_price: fresh.unitPrice, currency: fresh.currency },
    });
    if (outcome.status === "duplicate") throw new DuplicateTransferError(spec.keys.charge);
    if (outcome.status === "insufficient_funds") throw new Error(`charge ${spec.keys.charge} refused although the account is locked`);
  }
  return { status: "debited" };
}

async function debitQuota(db: Knex, spec: DebitSpec): Promise<DebitResult> {
  assertUnits(spec.units);
  return withLedgerRetry(async () => {
    try {
      return await db.transaction((trx) => debitInTransaction(trx, spec));
    } catch (error) {
      // The refusal was thrown only to roll back the grants of this attempt; it is an answer.
      if (error instanceof QuotaRefused) {
        // Messages, not calls: a refused 500-message campaign batch weighs what 500 refused sends do.
        quotaRejectionsTotal.inc({ period: error.result.period }, spec.units);
        return error.result;
      }
      throw error;
    }
  });
}

/**
 * Charges one message against the application's daily and monthly allowances and, when a unit
 * price is set, its prepaid credit, all in one transaction: either every debit applies or none.
 * Idempotent per message id. Retries (bounded) on serialization, deadlock and unique conflicts.
 */
export async function debitMessageQuota(db: Knex, input: { applicationId: string; messageId: string; units?: number; now?: Date }): Promise<DebitResult> {
  const { applicationId, messageId } = input;
  return debitQuota(db, {
    applicationId,
    units: input.units ?? 1,
    now: input.now ?? new Date(),
    messageId,
    keys: { daily: `debit:daily:${messageId}`, monthly: `debit:monthly:${messageId}`, charge: `charge:${messageId}` },
    metadata: {},
  });
}

const batchKeys = (applicationId: string, batchId: string) => ({
  daily: `debit:daily:batch:${applicationId}:${batchId}`,
  monthly: `debit:monthly:batch:${applicationId}:${batchId}`,
  charge: `charge:batch:${applicationId}:${batchId}`,
});

/**
 * {@link debitMessageQuota} for a campaign batch: `units` messages in one transfer per account,
 * all or nothing, idempotent per batch id (which is scoped to the application).
 */
export async function debitBatchQuota(db: Knex, input: { applicationId: string; batchId: string; units: number; now?: Date }): Promise<DebitResult> {
  assertKeyPart("batchId", input.batchId);
  return debitQuota(db, {
    applicationId: input.applicationId,
    units: input.units,
    now: input.now ?? new Date(),
    messageId: null,
    keys: batchKeys(input.applicationId, input.batchId),
    metadata: { batch_id: input.batchId },
  });
}

// Reversals move from contra accounts that may go negative, so only a concurrent twin stops one.
function assertReversed(outcome: TransferOutcome, key: string): void {
  if (outcome.status === "duplicate") throw new DuplicateTransferError(key);
  if (outcome.status === "insufficient_funds") throw new Error(`reversal ${key} refused: its source account does not allow a negative balance`);
}

/** The debit transfers found and their accounts, locked. */
async function lockOriginals(trx: Knex.Transaction, originals: readonly TransferRow[]): Promise<Map<string, LockedAccount>> {
  return lockAccounts(
    trx,
    originals.flatMap((t) => [t.debit_account_id, t.credit_account_id]),
  );
}

/**
 * Reverses exactly the transfers a message's debit made (allowances and charge), back into the
 * same period accounts even after the period rolled over. Idempotent; "not_debited" when there is
 * no debit to reverse (never debited, refused, or the application was unlimited). `now` is accepted
 * for symmetry with the debit but not needed: the accounts come from the original transfers.
 */
export async function refundMessageQuota(db: Knex, input: { applicationId: string; messageId: string; now?: Date }): Promise<RefundResult> {
  const { applicationId, messageId } = input;
  const keys = [`debit:daily:${messageId}`, `debit:monthly:${messageId}`, `charge:${messageId}`];
  return withLedgerRetry(() =>
    db.transaction(async (trx): Promise<RefundResult> => {
      const originals = await findTransfers(trx, applicationId, keys);
      if (originals.length === 0) return { status: "not_debited" };
      const accounts = await lockOriginals(trx, originals);
      // After the locks: a concurrent refund of the same message has committed or not started.
      const done = new Set((await findTransfers(trx, applicationId, originals.map((t) => `refund:${t.idempotency_key}`))).map((t) => t.idempotency_key));
      let units = 0;
      for (const original of originals) {
        const key = `refund:${original.idempotency_key}`;
        if (done.has(key)) continue;
        const outcome = await postTransfer(trx, {
          from: accounts.get(original.credit_account_id)!,
          to: accounts.get(original.debit_account_id)!,
          amount: Number(original.amount),
          idempotencyKey: key,
          reason: original.idempotency_key.startsWith("charge:") ? "quota_charge_refund" : "quota_refund",
          applicationId,
          messageId,
          metadata: { units: Number(original.metadata.units ?? original.amount) },
          reversesTransferId: original.id,
        });
        assertReversed(outcome, key);
        units = Math.max(units, Number(original.metadata.units ?? original.amount));
      }
      return units > 0 ? { status: "refunded", units } : { status: "already_refunded" };
    }),
  );
}

interface BatchDebitState {
  originals: TransferRow[];
  accounts: Map<string, LockedAccount>;
  /** Amount and units already reversed, per original transfer id. */
  reversedOf: Map<string, { amount: number; units: number }>;
  debitedUnits: number;
  refundedUnits: number;
}

/** A batch's debit transfers, locked, with what earlier refunds already reversed; null when never debited. */
async function lockBatchDebit(trx: Knex.Transaction, applicationId: string, batchId: string): Promise<BatchDebitState | null> {
  const originals = await findTransfers(trx, applicationId, Object.values(batchKeys(applicationId, batchId)));
  if (originals.length === 0) return null;
  const accounts = await lockOriginals(trx, originals);
  // Read after the locks: a concurrent refund of the same batch has committed or not started.
  const reversed = await trx("ledger_transfers")
    .whereIn("reverses_transfer_id", originals.map((t) => t.id))
    .groupBy("reverses_transfer_id")
    .select<Array<{ reverses_transfer_id: string; amount: number; units: number }>>(
      "reverses_transfer_id",
      trx.raw("sum(amount) as amount"),
      trx.raw("sum((metadata->>'units')::bigint) as units"),
    );
  const reversedOf = new Map(reversed.map((r) => [r.reverses_transfer_id, { amount: Number(r.amount), units: Number(r.units) }]));
  return {
    originals,
    accounts,
    reversedOf,
    debitedUnits: Number(originals[0]!.metadata.units),
    refundedUnits: Math.max(0, ...originals.map((t) => reversedOf.get(t.id)?.units ?? 0)),
  };
}

/** Posts the reversal of `units` of a locked batch debit (charge pro rata; the last units get the exact rest). */
async function reverseBatchUnits(trx: Knex.Transaction, applicationId: string, batchId: string, state: BatchDebitState, units: number, refundId: string): Promise<void> {
  const remainingUnits = state.debitedUnits - state.refundedUnits;
  if (units > remainingUnits) throw new RangeError(`cannot refund ${units} units of batch ${batchId}: ${remainingUnits} of ${state.debitedUnits} are unrefunded`);
  for (const original of state.originals) {
    const isCharge = original.idempotency_key.startsWith("charge:");
    const left = Number(original.amount) - (state.reversedOf.get(original.id)?.amount ?? 0);
    let amount = units;
    if (isCharge) amount = units === remainingUnits ? left : Math.min(left, chargeFor(units, Number(original.metadata.unit_price)));
    if (amount <= 0) continue;
    const key = `refund:${original.idempotency_key}:${refundId}`;
    const outcome = await postTransfer(trx, {
      from: state.accounts.get(original.credit_account_id)!,
      to: state.accounts.get(original.debit_account_id)!,
      amount,
      idempotencyKey: key,
      reason: isCharge ? "quota_charge_refund" : "quota_refund",
      applicationId,
      metadata: { batch_id: batchId, refund_id: refundId, units },
      reversesTransferId: original.id,
    });
    assertReversed(outcome, key);
  }
}

/**
 * Refunds a campaign batch down to what was sent: brings the units refunded so far (by any earlier
 * refund) up to `unsentUnits`, the number of the batch's messages the provider never accepted.
 * Unlike a refund of "the messages this call changed", it cannot miss messages that an earlier
 * step failed, nor the ones of an attempt that crashed between failing them and refunding: a
 * repeat, a concurrent twin or a smaller count refunds nothing. Throws when `unsentUnits` exceeds
 * what the batch debited.
 */
export async function refundUnsentBatchQuota(db: Knex, input: { applicationId: string; batchId: string; unsentUnits: number }): Promise<RefundResult> {
  const { applicationId, batchId, unsentUnits } = input;
  assertKeyPart("batchId", batchId);
  if (!Number.isSafeInteger(unsentUnits) || unsentUnits < 0) throw new RangeError(`unsentUnits must be a non-negative integer, got ${unsentUnits}`);
  return withLedgerRetry(() =>
    db.transaction(async (trx): Promise<RefundResult> => {
      const state = await lockBatchDebit(trx, applicationId, batchId);
      if (!state) return { status: "not_debited" };
      const units = unsentUnits - state.refundedUnits;
      if (units <= 0) return { status: "already_refunded" };
      // The target names the refund: a twin with the same target collides on the key and is retried.
      await reverseBatchUnits(trx, applicationId, batchId, state, units, `unsent-${unsentUnits}`);
      return { status: "refunded", units };
    }),
  );
}

async function allowanceStatus(db: Knex, applicationId: string, limit: PeriodLimit): Promise<AllowanceStatus> {
  const row = await db("ledger_accounts").where({ application_id: applicationId, code: limit.account.code }).first<{ id: string; balance: number } | undefined>("id", "balance");
  // No account yet: nothing was sent in this period.
  const used = row ? (await grantState(db, row.id)).granted - Number(row.balance) : 0;
  // The next debit brings the grant to the current limit, so what it can spend is limit − used,
  // whether or not that adjustment has happened yet.
  return { limit: limit.limit, used, remaining: Math.max(0, limit.limit - used), reset_at: limit.resetAt.toISOString() };
}

/**
 * The application's current daily and monthly allowance (null = unlimited) and credit (null when
 * it neither charges per message nor holds credit), read from the ledger.
 */
export async function quotaStatus(db: Knex, applicationId: string, now: Date = new Date()): Promise<QuotaStatus> {
  const config = await loadQuotaConfig(db, applicationId);
  return statusOf(db, applicationId, config, periodKeys(now, config.timezone));
}

async function statusOf(db: Knex, applicationId: string, config: QuotaConfig, periods: PeriodKeys): Promise<QuotaStatus> {
  const limits = configuredLimits(applicationId, config, periods);
  const status: QuotaStatus = { daily: null, monthly: null, credit: null };
  for (const limit of limits) status[limit.period] = await allowanceStatus(db, applicationId, limit);
  const creditRow = await db("ledger_accounts").where({ application_id: applicationId, code: creditAccount(applicationId, config.currency).code }).first<{ balance: number } | undefined>("balance");
  const balance = Number(creditRow?.balance ?? 0);
  if (config.unitPrice !== null || balance > 0) status.credit = { balance, unit_price: config.unitPrice, currency: config.currency };
  return status;
}

const EXHAUSTED_MESSAGES: Record<QuotaExhausted["period"], string> = {
  daily: "The daily message quota is exhausted",
  monthly: "The monthly message quota is exhausted",
  credit: "The credit balance does not cover the message charge",
};

/** The REF-001 `quota_exceeded` (403) error for a refused debit. */
export function quotaExceededError(exhausted: QuotaExhausted): ApiError {
  const details: Record<string, unknown> = {
    period: exhausted.period,
    limit: exhausted.limit,
    used: exhausted.used,
    reset_at: exhausted.resetAt ? exhausted.resetAt.toISOString() : null,
  };
  if (exhausted.period === "credit") Object.assign(details, { balance: exhausted.balance, unit_price: exhausted.unitPrice, currency: exhausted.currency, required: exhausted.required });
  return new ApiError("quota_exceeded", EXHAUSTED_MESSAGES[exhausted.period], details);
}

/**
 * Throws `quota_exceeded` when the daily or monthly allowance or the credit cannot cover `units`
 * more messages. A read without locks, for rejecting a send early: the debit stays authoritative.
 */
export async function assertQuotaAvailable(db: Knex, applicationId: string, units = 1, now: Date = new Date()): Promise<void> {
  assertUnits(units);
  const config = await loadQuotaConfig(db, applicationId);
  const periods = periodKeys(now, config.timezone);
  const status = await statusOf(db, applicationId, config, periods);
  const refusals: QuotaExhausted[] = [];
  for (const [period, resetAt] of [["daily", periods.dayResetAt], ["monthly", periods.monthResetAt]] as const) {
    const allowance = status[period];
    if (allowance && allowance.remaining < units) refusals.push({ status: "exhausted", period, limit: allowance.limit, used: allowance.used, resetAt });
  }
  const charge = chargeFor(units, config.unitPrice);
  if (charge > 0 && status.credit && status.credit.balance < charge) {
    refusals.push({ status: "exhausted", period: "credit", limit: null, used: null, resetAt: null, balance: status.credit.balance, unitPrice: config.unitPrice!, currency: config.currency, required: charge });
  }
  if (refusals.length > 0) {
    const binding = mostBinding(refusals);
    quotaRejectionsTotal.inc({ period: binding.period }, units);
    throw quotaExceededError(binding);
  }
}

/**
 * Sum of all balances per unit. Every transfer subtracts and adds the same amount, so each sum must
 * be 0; anything else means a balance changed outside a transfer.
 */
export async function ledgerInvariant(db: Knex): Promise<Array<{ unit: string; sum: number }>> {
  const rows = await db("ledger_accounts").groupBy("unit").orderBy("unit").select<Array<{ unit: string; sum: number }>>("unit", db.raw("sum(balance) as sum"));
  return rows.map((r) => ({ unit: r.unit, sum: Number(r.sum) }));
}

/**
 * Accounts whose balance differs from their journal (credits − debits), optionally for one
 * application. Expect none: the crash and restart tests check it with {@link ledgerInvariant}
 * (nothing runs it periodically yet).
 */
export async function ledgerBalanceMismatches(db: Knex, applicationId?: string): Promise<Array<{ id: string; code: string; balance: number; journal: number }>> {
  const result = await db.raw<{ rows: Array<{ id: string; code: string; balance: number; journal: number }> }>(
    `select a.id, a.code, a.balance, j.journal
       from ledger_accounts a
       cross join lateral (
         select coalesce((select sum(amount) from ledger_transfers where credit_account_id = a.id), 0)
              - coalesce((select sum(amount) from ledger_transfers where debit_account_id = a.id), 0) as journal
       ) j
      where a.balance <> j.journal ${applicationId ? "and a.application_id = ?" : ""}`,
    applicationId ? [applicationId] : [],
  );
  return result.rows.map((r) => ({ id: r.id, code: r.code, balance: Number(r.balance), journal: Number(r.journal) }));
}
