import type { Knex } from "knex";

/** The parts of a knex transactor we rely on (set by knex on every transaction it creates). */
interface TransactorLike {
  isTransaction?: boolean;
  parentTransaction?: TransactorLike;
  executionPromise?: Promise<unknown>;
}

/**
 * Runs `fn` once the work done through `db` is durable: at once for a plain knex instance (its
 * statements have committed), or when the OUTERMOST transaction commits. If that transaction
 * rolls back (a lost race, a retried ledger transaction), `fn` never runs, so counters that use
 * this never count writes that did not happen.
 */
export function afterCommit(db: Knex | Knex.Transaction, fn: () => void): void {
  let top = db as unknown as TransactorLike;
  while (top.parentTransaction) top = top.parentTransaction;
  if (!top.isTransaction || !top.executionPromise) {
    fn();
    return;
  }
  top.executionPromise.then(fn, skipOnRollback);
}

// The transaction's own caller receives (and handles) the rollback error; a rolled-back write is not counted.
function skipOnRollback(): void {
  return undefined;
}
