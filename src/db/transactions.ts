import type { Knex } from "knex";
import { isRerunnable } from "./availability";

/**
 * Runs `work` in one transaction and runs it again (up to `attempts` times) if PostgreSQL aborted it
 * as a deadlock victim or serialization failure. Given a transaction, `work` runs in a savepoint:
 * rolling back to it releases the locks taken since, which breaks the deadlock, while the locks the
 * outer transaction took before stay held. Our own lock orders avoid most deadlocks, but other
 * paths touching the same rows in another order must not turn into a 500 or a lost transaction.
 */
export async function inTransaction<T>(db: Knex | Knex.Transaction, work: (trx: Knex.Transaction) => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction(work);
    } catch (error) {
      if (attempt >= attempts || !isRerunnable(error)) throw error;
    }
  }
}
