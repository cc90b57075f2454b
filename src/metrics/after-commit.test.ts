import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, type TestApp } from "../../test/support/harness";
import { afterCommit } from "./after-commit";

let app: TestApp;

before(async () => {
  app = await startTestApp();
});
after(async () => {
  await app.close();
});

const settle = () => new Promise((resolve) => setImmediate(resolve));

test("afterCommit runs only for writes that became durable: not for a rolled-back savepoint inside a committed transaction", async () => {
  const ran: string[] = [];
  afterCommit(app.deps.db, () => ran.push("no transaction"));
  await app.deps.db.transaction(async (outer) => {
    await assert.rejects(
      outer.transaction(async (savepoint) => {
        afterCommit(savepoint, () => ran.push("rolled-back savepoint"));
        throw new Error("refused inside");
      }),
      /refused inside/,
    );
    await outer.transaction(async (savepoint) => {
      afterCommit(savepoint, () => ran.push("released savepoint"));
    });
    afterCommit(outer, () => ran.push("outer"));
    assert.deepEqual(ran, ["no transaction"], "nothing runs before the outer commit");
  });
  await assert.rejects(
    app.deps.db.transaction(async (outer) => {
      afterCommit(outer, () => ran.push("rolled-back outer"));
      throw new Error("rolled back");
    }),
    /rolled back/,
  );
  await settle();
  assert.deepEqual(ran.sort(), ["no transaction", "outer", "released savepoint"]);
});
