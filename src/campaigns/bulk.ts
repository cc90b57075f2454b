/**
 * Set-based message transitions for campaigns. They follow the same rules as
 * `applyMessageTransition` — TRANSITIONS from the one state machine decides the allowed source
 * statuses, the status timestamp and the event name — but change hundreds of rows per statement
 * and write their message_events in one multi-row insert.
 */
import type { Knex } from "knex";
import { newId } from "../db/ids";
import { TRANSITIONS, type MessageStatus, type TransitionName } from "../messages/state-machine";
import { afterCommit } from "../metrics/after-commit";
import { messagesTotal, providerLabel } from "../metrics/registry";

/** Messages changed by a bulk transition. */
export interface BulkChanged {
  id: string;
  application_id: string;
  from_status: MessageStatus;
  provider: string | null;
  subscription_type: string | null;
}

/**
 * Counts `event` for these messages by provider once the outermost transaction commits (the same
 * counter the single-message pipeline feeds), one increment per provider instead of per row.
 */
export function countMessageEvents(trx: Knex | Knex.Transaction, event: string, rows: ReadonlyArray<Pick<BulkChanged, "provider" | "subscription_type">>): void {
  if (rows.length === 0) return;
  const byProvider = new Map<string, number>();
  for (const row of rows) byProvider.set(providerLabel(row), (byProvider.get(providerLabel(row)) ?? 0) + 1);
  afterCommit(trx, () => {
    for (const [provider, n] of byProvider) messagesTotal.inc({ event, channel: "push", provider }, n);
  });
}

const EVENT_CHUNK = 1_000;

async function insertEvents(trx: Knex.Transaction, action: TransitionName, changed: readonly BulkChanged[], data: (row: BulkChanged) => Record<string, unknown>): Promise<void> {
  const rule = TRANSITIONS[action];
  for (let i = 0; i < changed.length; i += EVENT_CHUNK) {
    await trx("message_events").insert(
      changed.slice(i, i + EVENT_CHUNK).map((row) => ({
        id: newId(),
        message_id: row.id,
        application_id: row.application_id,
        event_type: rule.event,
        from_status: row.from_status,
        to_status: rule.to,
        data: JSON.stringify(data(row)),
      })),
    );
  }
  countMessageEvents(trx, rule.event, changed);
}

/**
 * Applies `action` to every message matched by `scope` whose status allows it (a conditional
 * `… WHERE status IN (from)` under row locks, so a racing single-message change either wins before
 * or sees the result), setting the same extra columns on each. Returns the rows it changed.
 */
export async function transitionMessagesWhere(
  trx: Knex.Transaction,
  action: TransitionName,
  scope: (query: Knex.QueryBuilder) => void,
  set: Record<string, unknown> = {},
  eventData: Record<string, unknown> = {},
): Promise<BulkChanged[]> {
  const rule = TRANSITIONS[action];
  const locked = (await trx("messages")
    .select("id", "application_id", "status as from_status", "provider", "subscription_type")
    .where(scope)
    .whereIn("status", rule.from)
    .forUpdate()) as BulkChanged[];
  if (locked.length === 0) return [];
  const values: Record<string, unknown> = { ...set, status: rule.to };
  if (rule.timestamp) values[rule.timestamp] = trx.fn.now();
  for (const [key, value] of Object.entries(values)) {
    if (value !== null && typeof value === "object" && !(value instanceof Date) && typeof (value as { toSQL?: unknown }).toSQL !== "function") values[key] = JSON.stringify(value);
  }
  // The rows are locked and their status known, so the update cannot race another transition.
  const changed: BulkChanged[] = [];
  for (let i = 0; i < locked.length; i += EVENT_CHUNK) {
    const chunk = locked.slice(i, i + EVENT_CHUNK);
    await trx("messages").whereIn("id", chunk.map((r) => r.id)).update(values);
    changed.push(...chunk);
  }
  await insertEvents(trx, action, changed, () => eventData);
  return changed;
}

/** One message's outcome for {@link transitionMessagesEach}. */
export interface PerMessageOutcome {
  id: string;
  provider: string | null;
  provider_message_id?: string | null;
  error_code?: string | null;
  error_message?: string | null;
  error_details?: Record<string, unknown>;
  /** Stored on the event row. */
  event?: Record<string, unknown>;
}

/**
 * Applies `action` to a list of messages that each carry their own provider answer (one UPDATE …
 * FROM jsonb_to_recordset), counting the attempt. Only rows still in an allowed status change.
 */
export async function transitionMessagesEach(trx: Knex.Transaction, action: TransitionName, outcomes: readonly PerMessageOutcome[]): Promise<BulkChanged[]> {
  if (outcomes.length === 0) return [];
  const rule = TRANSITIONS[action];
  const stamp = rule.timestamp ? `, ${rule.timestamp} = now()` : "";
  const records = outcomes.map((o) => ({
    id: o.id,
    provider: o.provider,
    provider_message_id: o.provider_message_id ?? null,
    error_code: o.error_code ?? null,
    error_message: o.error_message ?? null,
    error_details: o.error_details ?? {},
  }));
  const result = await trx.raw(
    `UPDATE messages m SET status = ?${stamp}, attempts = m.attempts + 1, provider = v.provider,
       provider_message_id = coalesce(v.provider_message_id, m.provider_message_id),
       error_code = v.error_code, error_message = v.error_message, error_details = v.error_details
     FROM jsonb_to_recordset(?::jsonb) AS v(id uuid, provider text, provider_message_id text, error_code text, error_message text, error_details jsonb),
          (SELECT id, status FROM messages WHERE id = ANY(?::uuid[]) FOR UPDATE) old
     WHERE m.id = v.id AND old.id = m.id AND old.status = ANY(?::text[])
     RETURNING m.id, m.application_id, old.status AS from_status, m.provider, m.subscription_type`,
    [rule.to, JSON.stringify(records), outcomes.map((o) => o.id), [...rule.from]],
  );
  const changed = result.rows as BulkChanged[];
  const eventOf = new Map(outcomes.map((o) => [o.id, o.event ?? {}]));
  await insertEvents(trx, action, changed, (row) => eventOf.get(row.id) ?? {});
  return changed;
}
