import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Knex } from "knex";
import { eventually, startTestApp, type TestApp } from "../../test/support/harness";
import { newId } from "../db/ids";
import { ApiError } from "../http/errors";
import { balanceOf } from "./ledger";
import { MAX_CREDIT_BALANCE, MAX_QUOTA_MESSAGES, MAX_UNIT_PRICE } from "../applications/schemas";
import {
  assertQuotaAvailable,
  debitBatchQuota,
  debitMessageQuota,
  ledgerBalanceMismatches,
  ledgerInvariant,
  quotaStatus,
  refundMessageQuota,
  refundUnsentBatchQuota,
  type DebitResult,
} from "./quota";

let app: TestApp;
let db: Knex;
const applications: string[] = [];

// 12:00 in Seoul, 03:00 UTC, 22:00 the day before in New York.
const NOW = new Date("2026-11-22T03:00:00Z");
const NEXT_DAY = new Date("2026-11-23T03:00:00Z");

before(async () => {
  app = await startTestApp();
  db = app.deps.db;
});
after(async () => {
  await app.close();
});

async function createApp(quota: Record<string, unknown> | undefined, extra: Record<string, unknown> = {}): Promise<string> {
  // UTC unless a test says otherwise: these tests debit at fixed instants (NOW), not the clock's.
  const { id } = await app.createApplication({ ...(quota ? { quota } : {}), timezone: "UTC", ...extra });
  applications.push(id);
  return id;
}

async function updateQuota(applicationId: string, quota: Record<string, unknown>): Promise<void> {
  const res = await app.request("PATCH", `/admin/applications/${applicationId}`, { admin: true, body: { quota } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
}

const debit = (applicationId: string, now = NOW, messageId = newId()): Promise<DebitResult> => debitMessageQuota(db, { applicationId, messageId, now });

async function debitMany(applicationId: string, count: number, now = NOW): Promise<DebitResult[]> {
  const results: DebitResult[] = [];
  for (let i = 0; i < count; i++) results.push(await debit(applicationId, now));
  return results;
}

async function transfersOf(applicationId: string): Promise<Array<{ idempotency_key: string; reason: string; amount: number }>> {
  return db("ledger_transfers").where("application_id", applicationId).orderBy("id").select("idempotency_key", "reason", "amount");
}

async function quotaError(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ApiError, `expected ApiError, got ${String(error)}`);
    return error;
  }
  assert.fail("expected quota_exceeded");
}

describe("debitMessageQuota", () => {
  test("debits the daily and monthly allowance once per message", async () => {
    const id = await createApp({ daily_quota: 10, monthly_quota: 100 });
    const messageId = newId();
    assert.deepEqual(await debitMessageQuota(db, { applicationId: id, messageId, now: NOW }), { status: "debited" });
    assert.deepEqual(await debitMessageQuota(db, { applicationId: id, messageId, now: NOW }), { status: "already_debited" });
    // Even on another day the message stays charged once.
    assert.deepEqual(await debitMessageQuota(db, { applicationId: id, messageId, now: NEXT_DAY }), { status: "already_debited" });

    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 9);
    assert.equal(await balanceOf(db, id, "quota:monthly:2026-11"), 99);
    assert.equal(await balanceOf(db, id, "system:quota_consumed"), 2);
    assert.equal(await balanceOf(db, id, "system:quota_grant"), -110);
    const keys = (await transfersOf(id)).map((t) => `${t.idempotency_key} ${t.reason} ${t.amount}`).sort();
    assert.deepEqual(
      keys,
      [
        `debit:daily:${messageId} quota_debit 1`,
        `debit:monthly:${messageId} quota_debit 1`,
        `grant:${id}:daily:2026-11-22:1 quota_grant 10`,
        `grant:${id}:monthly:2026-11:1 quota_grant 100`,
      ].sort(),
    );
    const status = await quotaStatus(db, id, NOW);
    assert.deepEqual(status.daily, { limit: 10, used: 1, remaining: 9, reset_at: "2026-11-23T00:00:00.000Z" });
    assert.deepEqual(status.monthly, { limit: 100, used: 1, remaining: 99, reset_at: "2026-12-01T00:00:00.000Z" });
    assert.equal(status.credit, null);
  });

  test("a refused debit reports REF-001 details and records nothing", async () => {
    const id = await createApp({ daily_quota: 3 });
    assert.deepEqual(await debitMany(id, 3), Array(3).fill({ status: "debited" }));
    const refusedId = newId();
    const refused = await debitMessageQuota(db, { applicationId: id, messageId: refusedId, now: NOW });
    assert.deepEqual(refused, { status: "exhausted", period: "daily", limit: 3, used: 3, resetAt: new Date("2026-11-23T00:00:00Z") });
    assert.equal((await db("ledger_transfers").where("message_id", refusedId)).length, 0);

    const error = await quotaError(assertQuotaAvailable(db, id, 1, NOW));
    assert.equal(error.code, "quota_exceeded");
    assert.equal(error.status, 403);
    assert.deepEqual(error.details, { period: "daily", limit: 3, used: 3, reset_at: "2026-11-23T00:00:00.000Z" });

    // The refused message is not "already debited": it goes through once a new day opens.
    assert.deepEqual(await debitMessageQuota(db, { applicationId: id, messageId: refusedId, now: NEXT_DAY }), { status: "debited" });
    await assertQuotaAvailable(db, id, 2, NEXT_DAY);
    await quotaError(assertQuotaAvailable(db, id, 3, NEXT_DAY));
  });

  test("periods follow the application's timezone, and the quota's own timezone over it", async () => {
    const id = await createApp({ daily_quota: 5, monthly_quota: 50 }, { timezone: "Asia/Seoul" });
    await debit(id);
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 4);
    assert.equal((await quotaStatus(db, id, NOW)).daily?.reset_at, "2026-11-22T15:00:00.000Z");

    await db("message_quotas").where("application_id", id).update({ timezone: "America/New_York" });
    await debit(id);
    // 03:00 UTC is still the 21st in New York: a fresh day, but the same month.
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-21"), 4);
    assert.equal(await balanceOf(db, id, "quota:monthly:2026-11"), 48);
    const status = await quotaStatus(db, id, NOW);
    assert.deepEqual(status.daily, { limit: 5, used: 1, remaining: 4, reset_at: "2026-11-22T05:00:00.000Z" });
    assert.equal(status.monthly?.reset_at, "2026-12-01T05:00:00.000Z");
  });

  test("50 concurrent debits against a daily quota of 10 debit exactly 10 and never overdraw", async () => {
    const id = await createApp({ daily_quota: 10 });
    const results = await Promise.all(Array.from({ length: 50 }, () => debit(id)));
    assert.equal(results.filter((r) => r.status === "debited").length, 10);
    const refused = results.filter((r) => r.status === "exhausted");
    assert.equal(refused.length, 40);
    for (const r of refused) assert.deepEqual(r, { status: "exhausted", period: "daily", limit: 10, used: 10, resetAt: new Date("2026-11-23T00:00:00Z") });
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 0);
    assert.equal(await balanceOf(db, id, "system:quota_consumed"), 10);
    const reasons = (await transfersOf(id)).map((t) => t.reason);
    // 50 transactions raced to open the new period; exactly one grant was made.
    assert.equal(reasons.filter((r) => r === "quota_grant").length, 1);
    assert.equal(reasons.filter((r) => r === "quota_debit").length, 10);
  });

  test("concurrent debits of the same message charge it once", async () => {
    const id = await createApp({ daily_quota: 10, monthly_quota: 10, unit_price: 2, credit_balance: 100 });
    const messageId = newId();
    const results = await Promise.all(Array.from({ length: 10 }, () => debitMessageQuota(db, { applicationId: id, messageId, now: NOW })));
    assert.equal(results.filter((r) => r.status === "debited").length, 1);
    assert.equal(results.filter((r) => r.status === "already_debited").length, 9);
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 9);
    assert.equal(await balanceOf(db, id, "credit:KRW"), 98);
  });

  test("the monthly limit binds before the daily one, and the refusal rolls back the daily debit", async () => {
    const id = await createApp({ daily_quota: 10, monthly_quota: 5 });
    assert.deepEqual(await debitMany(id, 5), Array(5).fill({ status: "debited" }));
    assert.deepEqual(await debit(id), { status: "exhausted", period: "monthly", limit: 5, used: 5, resetAt: new Date("2026-12-01T00:00:00Z") });
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 5);
    // The next day has a fresh daily allowance, but the month is still spent.
    assert.equal((await debit(id, NEXT_DAY)).status, "exhausted");
    const error = await quotaError(assertQuotaAvailable(db, id, 1, NOW));
    assert.deepEqual(error.details, { period: "monthly", limit: 5, used: 5, reset_at: "2026-12-01T00:00:00.000Z" });
  });

  test("when both allowances are spent the monthly one is reported (it resets last)", async () => {
    const id = await createApp({ daily_quota: 2, monthly_quota: 2 });
    await debitMany(id, 2);
    assert.deepEqual(await debit(id), { status: "exhausted", period: "monthly", limit: 2, used: 2, resetAt: new Date("2026-12-01T00:00:00Z") });
  });

  test("prices, allowances and credit past what the ledger and JSON hold exactly are refused 422, and nothing changes", async () => {
    const id = await createApp({ unit_price: 1, credit_balance: MAX_CREDIT_BALANCE - 10 });
    const refused: Array<[Record<string, unknown>, string]> = [
      [{ unit_price: Number.MAX_SAFE_INTEGER }, "quota.unit_price"],
      [{ unit_price: MAX_UNIT_PRICE + 1 }, "quota.unit_price"],
      [{ daily_quota: MAX_QUOTA_MESSAGES + 1 }, "quota.daily_quota"],
      [{ monthly_quota: Number.MAX_SAFE_INTEGER }, "quota.monthly_quota"],
      [{ credit_balance: Number.MAX_SAFE_INTEGER }, "quota.credit_balance"],
      // Within the per-call bound, but the balance would pass the limit.
      [{ credit_balance: 11 }, "quota.credit_balance"],
    ];
    for (const [quota, field] of refused) {
      const res = await app.request("PATCH", `/admin/applications/${id}`, { admin: true, body: { quota } });
      assert.equal(res.status, 422, `${JSON.stringify(quota)}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error.code, "validation_error");
      assert.ok(res.body.error.details.fields[field], `${JSON.stringify(quota)} names ${field}: ${JSON.stringify(res.body.error.details)}`);
    }
    assert.equal(await balanceOf(db, id, "credit:KRW"), MAX_CREDIT_BALANCE - 10);
    await updateQuota(id, { credit_balance: 10, unit_price: MAX_UNIT_PRICE });
    assert.equal(await balanceOf(db, id, "credit:KRW"), MAX_CREDIT_BALANCE);
    // The dearest price on a whole campaign batch is still an exact charge.
    assert.deepEqual((await debitMessageQuota(db, { applicationId: id, messageId: newId(), now: NOW, units: 500 })).status, "debited");
  });

  test("unit_price charges the credit balance and refuses when it runs out", async () => {
    const id = await createApp({ unit_price: 7, credit_balance: 20 });
    assert.deepEqual(await debitMany(id, 2), Array(2).fill({ status: "debited" }));
    assert.equal(await balanceOf(db, id, "credit:KRW"), 6);
    assert.equal(await balanceOf(db, id, "system:revenue:KRW"), 14);
    assert.deepEqual(await debit(id), {
      status: "exhausted",
      period: "credit",
      limit: null,
      used: null,
      resetAt: null,
      balance: 6,
      unitPrice: 7,
      currency: "KRW",
      required: 7,
    });
    const error = await quotaError(assertQuotaAvailable(db, id, 1, NOW));
    assert.deepEqual(error.details, { period: "credit", limit: null, used: null, reset_at: null, balance: 6, unit_price: 7, currency: "KRW", required: 7 });
    assert.deepEqual((await quotaStatus(db, id, NOW)).credit, { balance: 6, unit_price: 7, currency: "KRW" });

    // A top-up through the admin API makes it sendable again.
    await updateQuota(id, { credit_balance: 10 });
    assert.deepEqual(await debit(id), { status: "debited" });
    assert.equal(await balanceOf(db, id, "credit:KRW"), 9);
  });

  test("a credit top-up with an Idempotency-Key is added once: a retry (lost response, concurrent twin) adds nothing more, another quota under that key is refused 409", async () => {
    const id = await createApp({ unit_price: 1, credit_balance: 100 });
    const topUp = (key: string, quota: Record<string, unknown>) =>
      app.request("PATCH", `/admin/applications/${id}`, { admin: true, body: { name: "retried top-up", quota }, headers: { "Idempotency-Key": key } });
    const [first, twin] = await Promise.all([topUp("invoice-42", { credit_balance: 50 }), topUp("invoice-42", { credit_balance: 50 })]);
    assert.deepEqual([first.status, twin.status], [200, 200], JSON.stringify([first.body, twin.body]));
    const retried = await topUp("invoice-42", { credit_balance: 50 });
    assert.equal(retried.status, 200, JSON.stringify(retried.body));
    assert.equal(retried.body.data.quota.credit_balance, 150);
    assert.equal(await balanceOf(db, id, "credit:KRW"), 150);
    const reused = await topUp("invoice-42", { credit_balance: 70 });
    assert.deepEqual([reused.status, reused.body.error?.code], [409, "idempotency_key_reused"]);
    const reusedWithoutCredit = await topUp("invoice-42", { daily_quota: 5 });
    assert.deepEqual([reusedWithoutCredit.status, reusedWithoutCredit.body.error?.code], [409, "idempotency_key_reused"]);
    assert.equal((await app.deps.db("message_quotas").where("application_id", id).first()).daily_quota, null, "the refused request changed nothing");
    // Another key is another top-up; without a key, every request adds its credit.
    assert.equal((await topUp("invoice-43", { credit_balance: 50 })).status, 200);
    await updateQuota(id, { credit_balance: 5 });
    await updateQuota(id, { credit_balance: 5 });
    assert.equal(await balanceOf(db, id, "credit:KRW"), 210);
  });

  test("a credit top-up while a debit holds the credit account waits for it instead of deadlocking", async () => {
    const id = await createApp({ daily_quota: 10, unit_price: 1, credit_balance: 5 });
    // A debit in flight: it has locked the credit account and is about to write its transfer, whose
    // foreign key key-shares the application row.
    const inFlight = await db.transaction();
    try {
      const { rows } = (await inFlight.raw("select pg_backend_pid() as pid")) as { rows: Array<{ pid: number }> };
      await inFlight("ledger_accounts").where({ application_id: id, code: "credit:KRW" }).forUpdate().select("id");
      const topUp = app.request("PATCH", `/admin/applications/${id}`, { admin: true, body: { quota: { credit_balance: 10 } } });
      // The top-up has reached the credit account and waits for the debit...
      await eventually(async () => {
        const waiting = (await db.raw("select count(*)::int as n from pg_stat_activity where ? = any(pg_blocking_pids(pid))", [rows[0]!.pid])) as { rows: Array<{ n: number }> };
        return waiting.rows[0]!.n > 0;
      }, 15_000, 20);
      // ...which now writes a row referencing the application. Had the top-up locked the application
      // row FOR UPDATE, this would wait for it: a deadlock, and the operator's top-up a 503.
      await inFlight("users").insert({ id: newId(), application_id: id, external_id: `in-flight-${newId()}` });
      await inFlight.commit();
      const res = await topUp;
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(await balanceOf(db, id, "credit:KRW"), 15);
    } finally {
      if (!inFlight.isCompleted()) await inFlight.rollback();
    }
  });

  test("a credit refusal rolls back the allowance debits of the same message", async () => {
    const id = await createApp({ daily_quota: 10, monthly_quota: 100, unit_price: 50, credit_balance: 60, billing_currency: "USD" });
    assert.equal((await debit(id)).status, "debited");
    const refused = await debit(id);
    assert.equal(refused.status, "exhausted");
    assert.equal(refused.period, "credit");
    const status = await quotaStatus(db, id, NOW);
    assert.equal(status.daily?.used, 1);
    assert.equal(status.monthly?.used, 1);
    assert.deepEqual(status.credit, { balance: 10, unit_price: 50, currency: "USD" });
  });

  test("unlimited applications record nothing", async () => {
    for (const id of [await createApp(undefined), await createApp({ daily_quota: null, monthly_quota: null })]) {
      const messageId = newId();
      assert.deepEqual(await debitMessageQuota(db, { applicationId: id, messageId, now: NOW }), { status: "unlimited" });
      assert.deepEqual(await debitMessageQuota(db, { applicationId: id, messageId, now: NOW }), { status: "unlimited" });
      assert.deepEqual(await quotaStatus(db, id, NOW), { daily: null, monthly: null, credit: null });
      await assertQuotaAvailable(db, id, 1_000_000, NOW);
      assert.deepEqual(await refundMessageQuota(db, { applicationId: id, messageId }), { status: "not_debited" });
      assert.equal((await db("ledger_accounts").where("application_id", id)).length, 0);
    }
  });

  test("only the configured limit is enforced when the other is unlimited", async () => {
    const id = await createApp({ monthly_quota: 2 });
    await debitMany(id, 2);
    assert.equal((await debit(id)).status, "exhausted");
    const status = await quotaStatus(db, id, NOW);
    assert.equal(status.daily, null);
    assert.deepEqual(status.monthly, { limit: 2, used: 2, remaining: 0, reset_at: "2026-12-01T00:00:00.000Z" });
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 0);
    assert.equal((await db("ledger_accounts").where({ application_id: id, code: "quota:daily:2026-11-22" })).length, 0);
  });

  test("rejects invalid units and unknown applications", async () => {
    const id = await createApp({ daily_quota: 1 });
    await assert.rejects(debitMessageQuota(db, { applicationId: id, messageId: newId(), units: 0 }), RangeError);
    await assert.rejects(debitMessageQuota(db, { applicationId: id, messageId: newId(), units: 1.5 }), RangeError);
    await assert.rejects(debitMessageQuota(db, { applicationId: newId(), messageId: newId() }), (e: unknown) => e instanceof ApiError && e.code === "resource_not_found");
    await assert.rejects(debitBatchQuota(db, { applicationId: id, batchId: "a:b", units: 1 }), RangeError);
  });
});

describe("limit changes mid-period", () => {
  test("raising grants the difference and lowering takes back what is left, keeping used exact", async () => {
    const id = await createApp({ daily_quota: 10 });
    await debitMany(id, 4);
    assert.deepEqual((await quotaStatus(db, id, NOW)).daily, { limit: 10, used: 4, remaining: 6, reset_at: "2026-11-23T00:00:00.000Z" });

    await updateQuota(id, { daily_quota: 6 });
    // Before the next debit adjusts the account, the status already reflects the new limit.
    assert.deepEqual((await quotaStatus(db, id, NOW)).daily, { limit: 6, used: 4, remaining: 2, reset_at: "2026-11-23T00:00:00.000Z" });
    assert.equal((await debit(id)).status, "debited");
    // granted 10 → 6 (4 moved back), then one debit.
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 1);
    assert.deepEqual((await quotaStatus(db, id, NOW)).daily, { limit: 6, used: 5, remaining: 1, reset_at: "2026-11-23T00:00:00.000Z" });

    // Lowered below what was already used: nothing more can be sent, used stays 5.
    await updateQuota(id, { daily_quota: 3 });
    assert.deepEqual(await debit(id), { status: "exhausted", period: "daily", limit: 3, used: 5, resetAt: new Date("2026-11-23T00:00:00Z") });
    assert.deepEqual((await quotaStatus(db, id, NOW)).daily, { limit: 3, used: 5, remaining: 0, reset_at: "2026-11-23T00:00:00.000Z" });

    await updateQuota(id, { daily_quota: 8 });
    assert.deepEqual((await quotaStatus(db, id, NOW)).daily, { limit: 8, used: 5, remaining: 3, reset_at: "2026-11-23T00:00:00.000Z" });
    assert.deepEqual(await debitMany(id, 3), Array(3).fill({ status: "debited" }));
    assert.equal((await debit(id)).status, "exhausted");
    assert.deepEqual((await quotaStatus(db, id, NOW)).daily, { limit: 8, used: 8, remaining: 0, reset_at: "2026-11-23T00:00:00.000Z" });

    const adjustments = (await transfersOf(id)).filter((t) => t.reason === "quota_grant" || t.reason === "quota_revoke");
    assert.deepEqual(
      adjustments.map((t) => [t.idempotency_key, t.reason, t.amount]),
      [
        [`grant:${id}:daily:2026-11-22:1`, "quota_grant", 10],
        [`grant:${id}:daily:2026-11-22:2`, "quota_revoke", 4],
        // The revocation made while lowering to 3 rolled back with the refused debit; raising to 8 granted 2.
        [`grant:${id}:daily:2026-11-22:3`, "quota_grant", 2],
      ],
    );
  });

  test("a limit lowered to zero refuses everything and reports the usage", async () => {
    const id = await createApp({ daily_quota: 5 });
    await debitMany(id, 2);
    await updateQuota(id, { daily_quota: 0 });
    assert.deepEqual(await debit(id), { status: "exhausted", period: "daily", limit: 0, used: 2, resetAt: new Date("2026-11-23T00:00:00Z") });
    await updateQuota(id, { daily_quota: null });
    assert.deepEqual(await debit(id), { status: "unlimited" });
  });
});

describe("refunds", () => {
  test("refundMessageQuota restores the allowance and the charge, once", async () => {
    const id = await createApp({ daily_quota: 2, monthly_quota: 10, unit_price: 5, credit_balance: 100 });
    const [first, second] = [newId(), newId()];
    await debitMessageQuota(db, { applicationId: id, messageId: first, now: NOW });
    await debitMessageQuota(db, { applicationId: id, messageId: second, now: NOW });
    assert.equal((await debit(id)).status, "exhausted");
    assert.equal(await balanceOf(db, id, "credit:KRW"), 90);

    assert.deepEqual(await refundMessageQuota(db, { applicationId: id, messageId: first }), { status: "refunded", units: 1 });
    assert.deepEqual(await refundMessageQuota(db, { applicationId: id, messageId: first }), { status: "already_refunded" });
    assert.deepEqual(await refundMessageQuota(db, { applicationId: id, messageId: newId() }), { status: "not_debited" });
    assert.equal(await balanceOf(db, id, "credit:KRW"), 95);
    assert.equal(await balanceOf(db, id, "system:revenue:KRW"), 5);
    const status = await quotaStatus(db, id, NOW);
    assert.deepEqual(status.daily, { limit: 2, used: 1, remaining: 1, reset_at: "2026-11-23T00:00:00.000Z" });
    assert.equal(status.monthly?.used, 1);

    // A refunded message is still "debited" for idempotency: it is not charged again.
    assert.deepEqual(await debitMessageQuota(db, { applicationId: id, messageId: first, now: NOW }), { status: "already_debited" });
    assert.deepEqual(await debit(id), { status: "debited" });

    const refunds = await db("ledger_transfers").where("message_id", first).whereNotNull("reverses_transfer_id").orderBy("idempotency_key").select("idempotency_key", "reason", "amount");
    assert.deepEqual(
      refunds.map((t) => [t.idempotency_key, t.reason, t.amount]),
      [
        [`refund:charge:${first}`, "quota_charge_refund", 5],
        [`refund:debit:daily:${first}`, "quota_refund", 1],
        [`refund:debit:monthly:${first}`, "quota_refund", 1],
      ],
    );
  });

  test("concurrent refunds of one message reverse it once", async () => {
    const id = await createApp({ daily_quota: 5 });
    const messageId = newId();
    await debitMessageQuota(db, { applicationId: id, messageId, now: NOW });
    const results = await Promise.all(Array.from({ length: 8 }, () => refundMessageQuota(db, { applicationId: id, messageId })));
    assert.equal(results.filter((r) => r.status === "refunded").length, 1);
    assert.equal(results.filter((r) => r.status === "already_refunded").length, 7);
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 5);
  });

  test("a refund after the period rolled over goes back to the old period's account", async () => {
    const id = await createApp({ daily_quota: 3, monthly_quota: 100 });
    const old = newId();
    await debitMessageQuota(db, { applicationId: id, messageId: old, now: NOW });
    await debitMany(id, 2, NEXT_DAY);
    assert.deepEqual(await refundMessageQuota(db, { applicationId: id, messageId: old }), { status: "refunded", units: 1 });
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 3);
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-23"), 1);
    assert.deepEqual((await quotaStatus(db, id, NEXT_DAY)).daily, { limit: 3, used: 2, remaining: 1, reset_at: "2026-11-24T00:00:00.000Z" });
    assert.equal((await quotaStatus(db, id, NEXT_DAY)).monthly?.used, 2);
  });
});

describe("batches", () => {
  test("debitBatchQuota debits a batch in one transfer per account, all or nothing, once", async () => {
    const id = await createApp({ daily_quota: 10, monthly_quota: 100 });
    assert.deepEqual(await debitBatchQuota(db, { applicationId: id, batchId: "campaign-1.b0", units: 4, now: NOW }), { status: "debited" });
    assert.deepEqual(await debitBatchQuota(db, { applicationId: id, batchId: "campaign-1.b0", units: 4, now: NOW }), { status: "already_debited" });
    assert.deepEqual(await debitBatchQuota(db, { applicationId: id, batchId: "campaign-1.b1", units: 7, now: NOW }), {
      status: "exhausted",
      period: "daily",
      limit: 10,
      used: 4,
      resetAt: new Date("2026-11-23T00:00:00Z"),
    });
    assert.deepEqual(await debitBatchQuota(db, { applicationId: id, batchId: "campaign-1.b1", units: 6, now: NOW }), { status: "debited" });
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 0);
    const debits = (await transfersOf(id)).filter((t) => t.reason === "quota_debit");
    assert.deepEqual(
      debits.map((t) => [t.idempotency_key, t.amount]).sort(),
      [
        [`debit:daily:batch:${id}:campaign-1.b0`, 4],
        [`debit:daily:batch:${id}:campaign-1.b1`, 6],
        [`debit:monthly:batch:${id}:campaign-1.b0`, 4],
        [`debit:monthly:batch:${id}:campaign-1.b1`, 6],
      ].sort(),
    );
    // Batch ids are per application: another tenant may reuse one.
    const other = await createApp({ daily_quota: 10 });
    assert.deepEqual(await debitBatchQuota(db, { applicationId: other, batchId: "campaign-1.b0", units: 4, now: NOW }), { status: "debited" });
  });

  test("refundUnsentBatchQuota brings a batch's refunds up to its unsent count, whatever refunded before, once", async () => {
    const id = await createApp({ daily_quota: 10, unit_price: 3, credit_balance: 100 });
    const batchId = "unsent-1";
    const unsent = (unsentUnits: number) => refundUnsentBatchQuota(db, { applicationId: id, batchId, unsentUnits });
    assert.deepEqual(await unsent(2), { status: "not_debited" });
    await debitBatchQuota(db, { applicationId: id, batchId, units: 10, now: NOW });
    // An earlier step refunded 3 of them (e.g. the part a crashed attempt got to).
    assert.deepEqual(await unsent(3), { status: "refunded", units: 3 });
    assert.deepEqual(await unsent(5), { status: "refunded", units: 2 });
    assert.deepEqual(await unsent(5), { status: "already_refunded" }, "a retry refunds nothing more");
    assert.deepEqual(await unsent(4), { status: "already_refunded" }, "a smaller count never takes a refund back");
    const twins = await Promise.all(Array.from({ length: 5 }, () => unsent(8)));
    assert.deepEqual(twins.filter((r) => r.status === "refunded"), [{ status: "refunded", units: 3 }]);
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 8);
    assert.equal(await balanceOf(db, id, "credit:KRW"), 94);
    await assert.rejects(unsent(11), RangeError);
    // All ten unsent: exactly the whole debit and charge come back.
    assert.deepEqual(await unsent(10), { status: "refunded", units: 2 });
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 10);
    assert.equal(await balanceOf(db, id, "credit:KRW"), 100);
    assert.deepEqual(await unsent(0), { status: "already_refunded" });
  });

  test("pro-rata charge refunds of a fractional price add up to exactly the original charge", async () => {
    const id = await createApp({ unit_price: 1, credit_balance: 100 });
    await db("message_quotas").where("application_id", id).update({ unit_price: 2.5 });
    await debitBatchQuota(db, { applicationId: id, batchId: "frac", units: 3, now: NOW });
    // round(3 × 2.5) = 8
    assert.equal(await balanceOf(db, id, "credit:KRW"), 92);
    // A later price change does not affect refunds of this batch.
    await db("message_quotas").where("application_id", id).update({ unit_price: 100 });
    const unsent = (unsentUnits: number) => refundUnsentBatchQuota(db, { applicationId: id, batchId: "frac", unsentUnits });
    await unsent(1);
    assert.equal(await balanceOf(db, id, "credit:KRW"), 95);
    await unsent(3);
    assert.equal(await balanceOf(db, id, "credit:KRW"), 100);
  });

  test("concurrent batch debits never overspend", async () => {
    const id = await createApp({ daily_quota: 20 });
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => debitBatchQuota(db, { applicationId: id, batchId: `c-${i}`, units: 3, now: NOW })));
    assert.equal(results.filter((r) => r.status === "debited").length, 6);
    assert.equal(await balanceOf(db, id, "quota:daily:2026-11-22"), 2);
  });
});

describe("quotaStatus", () => {
  test("reports limits, usage, reset times and credit from the ledger", async () => {
    const id = await createApp({ daily_quota: 10, monthly_quota: 100, unit_price: 5, credit_balance: 1000 }, { timezone: "Asia/Seoul" });
    assert.deepEqual(await quotaStatus(db, id, NOW), {
      daily: { limit: 10, used: 0, remaining: 10, reset_at: "2026-11-22T15:00:00.000Z" },
      monthly: { limit: 100, used: 0, remaining: 100, reset_at: "2026-11-30T15:00:00.000Z" },
      credit: { balance: 1000, unit_price: 5, currency: "KRW" },
    });
    await debitMany(id, 3);
    await debitBatchQuota(db, { applicationId: id, batchId: "s", units: 4, now: NOW });
    assert.deepEqual(await quotaStatus(db, id, NOW), {
      daily: { limit: 10, used: 7, remaining: 3, reset_at: "2026-11-22T15:00:00.000Z" },
      monthly: { limit: 100, used: 7, remaining: 93, reset_at: "2026-11-30T15:00:00.000Z" },
      credit: { balance: 965, unit_price: 5, currency: "KRW" },
    });
    await assertQuotaAvailable(db, id, 3, NOW);
    const error = await quotaError(assertQuotaAvailable(db, id, 4, NOW));
    assert.deepEqual(error.details, { period: "daily", limit: 10, used: 7, reset_at: "2026-11-22T15:00:00.000Z" });
    // Next local day (Seoul): the daily allowance is fresh, the month carries on.
    const status = await quotaStatus(db, id, new Date("2026-11-22T15:00:00Z"));
    assert.deepEqual(status.daily, { limit: 10, used: 0, remaining: 10, reset_at: "2026-11-23T15:00:00.000Z" });
    assert.equal(status.monthly?.used, 7);
  });
});

describe("ledger invariant", () => {
  test("after everything above, every unit sums to zero and every balance matches its journal", async () => {
    for (const row of await ledgerInvariant(db)) assert.equal(row.sum, 0, `unit ${row.unit}`);
    const units = (await ledgerInvariant(db)).map((r) => r.unit);
    assert.ok(units.includes("messages") && units.includes("KRW") && units.includes("USD"));
    assert.deepEqual(await ledgerBalanceMismatches(db), []);
    for (const id of applications) {
      for (const account of await db("ledger_accounts").where("application_id", id).select("code", "balance", "allow_negative")) {
        if (!account.allow_negative) assert.ok(account.balance >= 0, `${account.code} is negative`);
      }
    }
  });
});
