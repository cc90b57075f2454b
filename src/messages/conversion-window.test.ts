import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { createPushSubscription } from "../../test/support/fixtures";
import { messageWorkflowId } from "../../workflows/message";
import { MessageStatusKey } from "../../temporal/search-attributes";
import { newId } from "../db/ids";
import { applySdkAction, closeConversionWindow } from "./transitions";

// A 2 s conversion window (the audit's setting); the receipt timeout is long so it never interferes.
const TIMING = { AUTOMATA_RECEIPT_TIMEOUT: "1h", AUTOMATA_CONVERSION_WINDOW: "2s", AUTOMATA_RETRY_SCALE: "0.0001", AUTOMATA_PENDING_TIMEOUT: "1h" };
const HOUR = 3_600_000;

let app: TestApp;
let apiKey: string;
let applicationId: string;

before(async () => {
  app = await startTestApp({ worker: true, env: TIMING });
  ({ apiKey, id: applicationId } = await app.createApplication({ rate_limit_tier: "enterprise" }));
});
after(async () => {
  await app.close();
});

async function sentMessage(): Promise<string> {
  const sub = await createPushSubscription(app, apiKey);
  const res = await app.request("POST", "/messages", { key: apiKey, body: { subscription_id: sub.id, body: "x" } });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  const id = res.body.data.message_id as string;
  await eventually(async () => (await app.deps.db("messages").where("id", id).first("status")).status === "successful", 20_000);
  return id;
}

/** A `successful` message with no workflow, for driving the SQL decisions directly. */
async function bareSentMessage(): Promise<string> {
  const sub = await createPushSubscription(app, apiKey);
  const id = newId();
  await app.deps.db("messages").insert({ id, application_id: applicationId, subscription_id: sub.id, subscription_type: "iOSPush", status: "successful", body: "x", sent_at: new Date() });
  return id;
}

const convert = (id: string, conversionWindowMs = HOUR) => applySdkAction(app.deps.db, { messageId: id, applicationId, action: "convert", conversionWindowMs, eventData: { action: "opened" } });
const receive = (id: string, conversionWindowMs = HOUR) => applySdkAction(app.deps.db, { messageId: id, applicationId, action: "receive", conversionWindowMs });
/**
 * Holds the message's row lock while `queue` starts the contenders, then releases it and returns
 * what was started. PostgreSQL queues row-lock waiters in arrival order; `queued(n)` waits until `n`
 * backends wait behind the holder (directly or behind an earlier waiter), so the order is the one
 * the test chose, not whichever request happened to reach PostgreSQL first under load.
 */
async function whileLocked<T>(id: string, queue: (queued: (n: number) => Promise<void>) => Promise<T>): Promise<T> {
  const trx = await app.deps.db.transaction();
  try {
    await trx("messages").where("id", id).forUpdate().first("id");
    const holder = Number((await trx.raw("select pg_backend_pid() as pid")).rows[0].pid);
    const queued = async (n: number) => {
      await eventually(async () => (await waitersBehind(holder)) >= n, 10_000, 10);
    };
    return await queue(queued);
  } finally {
    await trx.commit();
  }
}

/** Backends waiting on a lock whose chain of blockers leads to `holder`. */
async function waitersBehind(holder: number): Promise<number> {
  const rows = (await app.deps.db.raw("select pid, pg_blocking_pids(pid) as blockers from pg_stat_activity where wait_event_type = 'Lock'")).rows as Array<{ pid: number; blockers: number[] }>;
  const behind = new Set<number>([holder]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const row of rows) {
      if (!behind.has(row.pid) && row.blockers.some((pid) => behind.has(pid))) {
        behind.add(row.pid);
        grew = true;
      }
    }
  }
  return behind.size - 1;
}

const statusOf = async (id: string): Promise<string> => (await app.deps.db("messages").where("id", id).first("status")).status;

describe("conversion window (SEQ-003: after it a received message is final)", () => {
  test("a conversion after the window closed is refused with 409 invalid_status_transition; PostgreSQL and the workflow both say received", async () => {
    const id = await sentMessage();
    const received = await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
    assert.equal(received.status, 200);
    const handle = app.deps.temporal.workflow.getHandle(messageWorkflowId(id));
    assert.equal(await handle.result(), "received");

    const late = await app.request("POST", `/messages/${id}/convert`, { key: apiKey, body: { action: "opened" } });
    assert.equal(late.status, 409, JSON.stringify(late.body));
    assert.equal(late.body.status, "error");
    assert.equal(late.body.error.code, "invalid_status_transition");
    assert.match(late.body.error.message, /conversion window closed/);
    const details = late.body.error.details;
    assert.equal(details.id, id);
    assert.equal(details.status, "received");
    assert.equal(details.attempted, "converted");
    assert.equal(details.received_at, received.body.data.received_at);
    const closedAt = Date.parse(details.conversion_window_closed_at);
    assert.ok(closedAt >= Date.parse(details.received_at) + 2_000 - 5 && closedAt <= Date.now(), JSON.stringify(details));

    const message = (await app.request("GET", `/messages/${id}`, { key: apiKey })).body.data;
    assert.equal(message.status, "received");
    assert.equal(message.converted_at, null);
    assert.equal(message.conversion_window_closes_at, details.conversion_window_closed_at);
    assert.deepEqual(message.events.map((e: { event_type: string }) => e.event_type), ["created", "sent", "received"]);
    assert.equal((await handle.describe()).typedSearchAttributes.get(MessageStatusKey), "received");
  });

  test("within the window the conversion is applied and the workflow finishes converted", async () => {
    const id = await sentMessage();
    await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
    const converted = await app.request("POST", `/messages/${id}/convert`, { key: apiKey, body: { action: "opened" } });
    assert.equal(converted.status, 200, JSON.stringify(converted.body));
    assert.equal(await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).result(), "converted");
    const repeated = await app.request("POST", `/messages/${id}/convert`, { key: apiKey, body: { action: "opened" } });
    assert.equal(repeated.status, 200, "a repeated conversion stays idempotent, even after the window");
  });

  test("the workflow's window timer closes the window in PostgreSQL even if the stored deadline is later (clock or config skew)", async () => {
    const id = await sentMessage();
    await app.request("POST", `/messages/${id}/status`, { key: apiKey, body: { status: "received" } });
    // As if the API's window were an hour: only the workflow's 2 s timer ends it.
    await app.deps.db("messages").where("id", id).update({ conversion_deadline: app.deps.db.raw("now() + interval '1 hour'") });
    assert.equal(await app.deps.temporal.workflow.getHandle(messageWorkflowId(id)).result(), "received");
    const late = await app.request("POST", `/messages/${id}/convert`, { key: apiKey, body: { action: "opened" } });
    assert.equal(late.status, 409);
    assert.equal(await statusOf(id), "received");
  });

  test("the receipt stores the deadline: received_at + the window", async () => {
    const id = await bareSentMessage();
    assert.equal((await receive(id, 5_000)).outcome, "applied");
    const row = await app.deps.db("messages").where("id", id).first("received_at", "conversion_deadline");
    assert.equal(new Date(row.conversion_deadline).getTime() - new Date(row.received_at).getTime(), 5_000);
    const implied = await bareSentMessage();
    assert.equal((await convert(implied, 5_000)).outcome, "applied", "a conversion without a receipt opens and uses the window at once");
    assert.equal(await statusOf(implied), "converted");
  });

  test("a receipt/conversion race at the window's edge is decided once, under the row lock", async () => {
    // Conversion queued first: it commits, and closing the window then reports converted.
    const first = await bareSentMessage();
    await receive(first);
    {
      const { converting, closing } = await whileLocked(first, async (queued) => {
        const converting = convert(first);
        await queued(1);
        const closing = closeConversionWindow(app.deps.db, first);
        await queued(2);
        return { converting, closing };
      });
      assert.equal((await converting).outcome, "applied");
      assert.equal(await closing, "converted");
    }
    // Closing queued first: the conversion behind it is refused although the stored deadline was an hour away.
    const second = await bareSentMessage();
    await receive(second);
    {
      const { converting, closing } = await whileLocked(second, async (queued) => {
        const closing = closeConversionWindow(app.deps.db, second);
        await queued(1);
        const converting = convert(second);
        await queued(2);
        return { closing, converting };
      });
      assert.equal(await closing, "received");
      assert.equal((await converting).outcome, "window_closed");
    }
    assert.equal(await statusOf(first), "converted");
    assert.equal(await statusOf(second), "received");

    // Unordered races: whatever closing answers is what PostgreSQL keeps.
    const ids = await Promise.all(Array.from({ length: 8 }, () => bareSentMessage()));
    await Promise.all(ids.map((id) => receive(id)));
    await Promise.all(
      ids.map(async (id) => {
        const [closed, converted] = await Promise.all([closeConversionWindow(app.deps.db, id), convert(id)]);
        assert.equal(converted.outcome === "applied" ? "converted" : "received", closed);
        assert.equal(await statusOf(id), closed);
      }),
    );
  });

  test("messages received before the deadline column existed use received_at + the configured window", async () => {
    const old = await bareSentMessage();
    await receive(old);
    await app.deps.db("messages").where("id", old).update({ conversion_deadline: null, received_at: app.deps.db.raw("now() - interval '3 seconds'") });
    const refused = await convert(old, 2_000);
    assert.equal(refused.outcome, "window_closed");
    const fresh = await bareSentMessage();
    await receive(fresh);
    await app.deps.db("messages").where("id", fresh).update({ conversion_deadline: null });
    assert.equal((await convert(fresh, 2_000)).outcome, "applied");
  });
});
