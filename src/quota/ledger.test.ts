import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Knex } from "knex";
import { startTestApp, type TestApp } from "../../test/support/harness";
import { newId } from "../db/ids";
import { DuplicateTransferError, LedgerConflictError, balanceOf, creditAccount, creditSourceAccount, isRetryableLedgerError, transfer, withLedgerRetry } from "./ledger";

describe("withLedgerRetry", () => {
  const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code });

  test("re-runs after serialization failures, deadlocks, unique violations and ledger conflicts", async () => {
    for (const error of [pgError("40001"), pgError("40P01"), pgError("23505"), new DuplicateTransferError("k"), new LedgerConflictError("changed")]) {
      assert.equal(isRetryableLedgerError(error), true, String(error));
      let calls = 0;
      const result = await withLedgerRetry(async () => {
        calls++;
        if (calls < 3) throw error;
        return "ok";
      });
      assert.deepEqual([result, calls], ["ok", 3]);
    }
  });

  test("gives up after the bounded number of attempts with the last error", async () => {
    let calls = 0;
    await assert.rejects(
      withLedgerRetry(async () => {
        calls++;
        throw pgError("40001");
      }, 3),
      /pg 40001/,
    );
    assert.equal(calls, 3);
  });

  test("does not retry other errors", async () => {
    for (const error of [pgError("23514"), new RangeError("bad"), null]) {
      assert.equal(isRetryableLedgerError(error), false);
      let calls = 0;
      await assert.rejects(
        withLedgerRetry(async () => {
          calls++;
          throw error;
        }),
      );
      assert.equal(calls, 1);
    }
  });
});

describe("transfer", () => {
  let app: TestApp;
  let db: Knex;
  before(async () => {
    app = await startTestApp();
    db = app.deps.db;
  });
  after(async () => {
    await app.close();
  });

  test("applies once per key, refuses overdrafts, and the CHECK backstops a bypassed condition", async () => {
    const { id } = await app.createApplication();
    const key = `test:${newId()}`;
    const topUp = { from: creditSourceAccount(id, "EUR"), to: creditAccount(id, "EUR"), amount: 50, idempotencyKey: key, reason: "test", applicationId: id };
    const first = await db.transaction((trx) => transfer(trx, topUp));
    assert.equal(first.status, "applied");
    const again = await db.transaction((trx) => transfer(trx, topUp));
    assert.equal(again.status, "duplicate");
    assert.equal(await balanceOf(db, id, "credit:EUR"), 50);

    const overdraft = await db.transaction((trx) =>
      transfer(trx, { from: creditAccount(id, "EUR"), to: creditSourceAccount(id, "EUR"), amount: 51, idempotencyKey: `test:${newId()}`, reason: "test", applicationId: id }),
    );
    assert.deepEqual(overdraft, { status: "insufficient_funds", balance: 50 });
    await assert.rejects(
      db("ledger_accounts").where({ application_id: id, code: "credit:EUR" }).update({ balance: -1 }),
      /ledger_accounts_balance_check/,
    );
    await assert.rejects(
      db.transaction((trx) => transfer(trx, { ...topUp, to: creditAccount(id, "USD"), idempotencyKey: `test:${newId()}` })),
      /cannot transfer between units/,
    );
  });

  test("concurrent transfers with one key apply once", async () => {
    const { id } = await app.createApplication();
    const key = `test:${newId()}`;
    const results = await Promise.all(
      Array.from({ length: 8 }, () =>
        withLedgerRetry(() =>
          db.transaction((trx) => transfer(trx, { from: creditSourceAccount(id, "EUR"), to: creditAccount(id, "EUR"), amount: 5, idempotencyKey: key, reason: "test", applicationId: id })),
        ),
      ),
    );
    assert.equal(results.filter((r) => r.status === "applied").length, 1);
    assert.equal(results.filter((r) => r.status === "duplicate").length, 7);
    assert.equal(await balanceOf(db, id, "credit:EUR"), 5);
  });
});
