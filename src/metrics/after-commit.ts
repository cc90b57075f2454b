import type { Knex } from "knex";

/** The parts of a knex transactor we rely on (set by knex on every transaction it creates). */
interface TransactorLike {
  isTransaction?: boolean;
  parentTransaction?: TransactorLike;
  executionPromise?: Promise<unknown>;
}

/**
 * Runs `fn` once the work done through `db` is durable: at once for a plain knex instance (its
 * statements have committed), or when the OUTERMOST transaction commits. If that transaction or
 * any savepoint between it and `db` rolls back (a lost race, a retried ledger transaction, a
 * refused debit whose caller goes on), `fn` never runs, so counters that use this never count
 * writes that did not happen.
 */
export function afterCommit(db: Knex | Knex.Transaction, fn: () => void): void {
  const chain: Array<Promise<unknown>> = [];
  let level: TransactorLike | undefined = db as unknown as TransactorLike;
  while (level?.isTransaction && level.executionPromise) {
    chain.push(level.executionPromise);
    level = level.parentTransaction;
  }
  if (chain.length === 0) {
    fn();
    return;
  }
  Promise.all(chain).then(fn, skipOnRollback);
}

// The transaction's own caller receives (and handles) the rollback error; a rolled-back write is not counted.
function skipOnRollback(): void {
  return undefined;
}
