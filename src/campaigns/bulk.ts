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
  /** False for an outcome decided before any provider call (`attempts` counts provider calls); default true. */
  attempted?: boolean;
}

/**
 * Applies `action` to a list of messages that each carry their own provider answer, counting the
 * attempt of those that reached a provider. Only rows still in an allowed status change. One statement locks, updates and writes
 * the event rows: the outcomes travel as one JSON parameter, where a multi-row event insert needed
 * seven bound parameters per message and a second round trip.
 */
export async function transitionMessagesEach(trx: Knex.Transaction, action: TransitionName, outcomes: readonly PerMessageOutcome[]): Promise<BulkChanged[]> {
  if (outcomes.length === 0) return [];
  const rule = TRANSITIONS[action];
  const stamp = rule.timestamp ? `, ${rule.timestamp} = now()` : "";
  const records = outcomes.map((o) => ({
    id: o.id,
    // Made here so event ids keep this process's UUIDv7 order (a message's events sort by it).
    event_id: newId(),
    provider: o.provider,
    provider_message_id: o.provider_message_id ?? null,
    error_code: o.error_code ?? null,
    error_message: o.error_message ?? null,
    error_details: o.error_details ?? {},
    event: o.event ?? {},
    attempted: o.attempted ?? true,
  }));
  const result = await trx.raw(
    `WITH v AS MATERIALIZED (
       SELECT * FROM jsonb_to_recordset(?::jsonb)
         AS v(id uuid, event_id uuid, provider text, provider_message_id text, error_code text, error_message text, error_details jsonb, event jsonb, attempted boolean)
     ), old AS MATERIALIZED (
       SELECT id, status FROM messages WHERE id = ANY(?::uuid[]) AND status = ANY(?::text[]) FOR UPDATE
     ), changed AS (
       UPDATE messages m SET status = ?${stamp}, attempts = m.attempts + v.attempted::int, provider = v.provider,
         provider_message_id = coalesce(v.provider_message_id, m.provider_message_id),
         error_code = v.error_code, error_message = v.error_message, error_details = v.error_details
       FROM v, old
       WHERE m.id = v.id AND old.id = m.id
       RETURNING m.id, m.application_id, old.status AS from_status, m.provider, m.subscription_type, v.event_id, v.event
     ), events AS (
       INSERT INTO message_events (id, message_id, application_id, event_type, from_status, to_status, data)
       SELECT event_id, id, application_id, ?, from_status, ?, event FROM changed
     )
     SELECT id, application_id, from_status, provider, subscription_type FROM changed`,
    [JSON.stringify(records), outcomes.map((o) => o.id), [...rule.from], rule.to, rule.event, rule.to],
  );
  const changed = result.rows as BulkChanged[];
  countMessageEvents(trx, rule.event, changed);
  return changed;
}

/** One campaign message to create: its recipient and its (possibly personalized) content. */
export interface NewCampaignMessage {
  id: string;
  subscription_id: string;
  user_id: string | null;
  subscription_type: string;
  title: string | null;
  body: string | null;
  data: Record<string, unknown>;
}

/** A batch of campaign messages to create, and what they share. */
export interface NewCampaignBatch {
  applicationId: string;
  campaignId: string;
  batchNo: number;
  templateId: string | null;
  templateVersion: number | null;
  options: Record<string, unknown>;
  /** Content differs per recipient; otherwise every message has the first one's content. */
  personalized: boolean;
  messages: readonly NewCampaignMessage[];
}

/**
 * Creates a batch's messages as `pending` with their `created` events, in one statement: per
 * recipient columns travel as arrays (unnest), shared ones once, where a multi-row insert bound
 * fifteen parameters per message. A message that already exists for the (campaign, subscription)
 * is skipped, so a retried activity creates nothing twice. Returns the rows it created.
 */
export async function insertCampaignMessages(trx: Knex.Transaction, batch: NewCampaignBatch): Promise<Array<Pick<BulkChanged, "id" | "provider" | "subscription_type">>> {
  const { messages } = batch;
  if (messages.length === 0) return [];
  const perRecipient = [messages.map((m) => m.id), messages.map((m) => m.subscription_id), messages.map((m) => m.user_id), messages.map((m) => m.subscription_type), messages.map(() => newId())];
  const columns = "?::uuid[], ?::uuid[], ?::uuid[], ?::text[], ?::uuid[]";
  const names = "id, subscription_id, user_id, subscription_type, event_id";
  const shared = messages[0]!;
  // Personalized content is three more arrays; shared content is bound once.
  const recipients = batch.personalized
    ? {
        sql: `SELECT * FROM unnest(${columns}, ?::text[], ?::text[], ?::jsonb[]) AS r(${names}, title, body, data)`,
        bindings: [...perRecipient, messages.map((m) => m.title), messages.map((m) => m.body), messages.map((m) => JSON.stringify(m.data))],
      }
    : {
        sql: `SELECT r.*, ?::text AS title, ?::text AS body, ?::jsonb AS data FROM unnest(${columns}) AS r(${names})`,
        bindings: [shared.title, shared.body, JSON.stringify(shared.data), ...perRecipient],
      };
  const result = await trx.raw(
    `WITH r AS MATERIALIZED (${recipients.sql}),
     created AS (
       INSERT INTO messages (id, application_id, subscription_id, user_id, campaign_id, campaign_batch, template_id, template_version,
                             channel, subscription_type, status, options, title, body, data)
       SELECT r.id, ?::uuid, r.subscription_id, r.user_id, ?::uuid, ?::int, ?::uuid, ?::int, 'push', r.subscription_type, 'pending', ?::jsonb, r.title, r.body, r.data
       FROM r
       ON CONFLICT (campaign_id, subscription_id) WHERE campaign_id IS NOT NULL DO NOTHING
       RETURNING id, application_id, provider, subscription_type
     ), events AS (
       INSERT INTO message_events (id, message_id, application_id, event_type, to_status, data)
       SELECT r.event_id, c.id, c.application_id, 'created', 'pending', ?::jsonb FROM created c JOIN r ON r.id = c.id
     )
     SELECT id, provider, subscription_type FROM created`,
    [
      ...recipients.bindings,
      batch.applicationId,
      batch.campaignId,
      batch.batchNo,
      batch.templateId,
      batch.templateVersion,
      JSON.stringify(batch.options),
      JSON.stringify({ source: "campaign", batch: batch.batchNo }),
      // node-postgres sends JS arrays (nulls included) as PostgreSQL arrays; knex's types omit nulls.
    ] as Knex.RawBinding[],
  );
  return result.rows as Array<Pick<BulkChanged, "id" | "provider" | "subscription_type">>;
}
