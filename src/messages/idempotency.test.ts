import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startTestApp, eventually, type TestApp } from "../../test/support/harness";
import { createPushSubscription } from "../../test/support/fixtures";
import { newId } from "../db/ids";
import { assertSameRequest, requestFingerprint } from "./idempotency";
import { ApiError } from "../http/errors";

// No worker: these tests are about what the API accepts and writes; the workflows it starts wait
// on a task queue nobody polls, and the messages stay pending.
let app: TestApp;
let apiKey: string;
let applicationId: string;

before(async () => {
  app = await startTestApp();
  ({ apiKey, id: applicationId } = await app.createApplication({ rate_limit_tier: "enterprise" }));
});
after(async () => {
  await app.close();
});

let keys = 0;
/** A fresh Idempotency-Key header. */
function keyHeader(): Record<string, string> {
  keys += 1;
  return { "Idempotency-Key": `idem-${process.pid}-${Date.now()}-${keys}` };
}

async function messagesWithKey(key: string) {
  return app.deps.db("messages").where({ application_id: applicationId, idempotency_key: key }).orderBy("id");
}

/** A failed message inserted directly (resend only takes failed ones); its subscription is live. */
async function failedMessage(subscriptionId: string, body: string): Promise<string> {
  const id = newId();
  await app.deps.db("messages").insert({ id, application_id: applicationId, subscription_id: subscriptionId, subscription_type: "iOSPush", status: "failed", body, failed_at: new Date() });
  return id;
}

describe("requestFingerprint", () => {
  test("ignores key order, not values or the endpoint", () => {
    const a = requestFingerprint("POST /messages", { subscription_id: "s", body: "x", data: { a: 1, b: 2 } });
    assert.equal(a, requestFingerprint("POST /messages", { data: { b: 2, a: 1 }, body: "x", subscription_id: "s" }));
    assert.notEqual(a, requestFingerprint("POST /messages", { subscription_id: "s", body: "y", data: { a: 1, b: 2 } }));
    assert.notEqual(a, requestFingerprint("POST /messages/template", { subscription_id: "s", body: "x", data: { a: 1, b: 2 } }));
  });

  test("rows without a fingerprint, and callers without one, match", () => {
    assert.doesNotThrow(() => assertSameRequest([{ id: "m", request_hash: null }], "h"));
    assert.doesNotThrow(() => assertSameRequest([{ id: "m", request_hash: "h" }], undefined));
    assert.doesNotThrow(() => assertSameRequest([{ id: "m", request_hash: "h" }], "h"));
    assert.throws(() => assertSameRequest([{ id: "m", request_hash: "h" }], "other"), (e: unknown) => e instanceof ApiError && e.code === "idempotency_key_reused");
  });
});

describe("Idempotency-Key reused with a different request", () => {
  test("POST /messages: the same request returns the first message; a different body answers 409 and writes nothing", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const other = await createPushSubscription(app, apiKey);
    const headers = keyHeader();
    const first = await app.request("POST", "/messages", { key: apiKey, headers, body: { subscription_id: sub.id, title: "t", body: "first", data: { a: 1, b: 2 } } });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    // Same request, fields in another order: the first result.
    const same = await app.request("POST", "/messages", { key: apiKey, headers, body: { data: { b: 2, a: 1 }, body: "first", title: "t", subscription_id: sub.id } });
    assert.equal(same.status, 201);
    assert.equal(same.body.data.message_id, first.body.data.message_id);

    for (const body of [
      { subscription_id: sub.id, title: "t", body: "second", data: { a: 1, b: 2 } },
      { subscription_id: other.id, title: "t", body: "first", data: { a: 1, b: 2 } },
      { subscription_id: sub.id, title: "t", body: "first", data: { a: 1, b: 2 }, badge: 1 },
    ]) {
      const reused = await app.request("POST", "/messages", { key: apiKey, headers, body });
      assert.equal(reused.status, 409, JSON.stringify(body));
      assert.equal(reused.body.status, "error");
      assert.equal(reused.body.error.code, "idempotency_key_reused");
      assert.deepEqual(reused.body.error.details, { header: "Idempotency-Key", message_ids: [first.body.data.message_id] });
    }
    const stored = await messagesWithKey(headers["Idempotency-Key"]!);
    assert.deepEqual(stored.map((m: { id: string }) => m.id), [first.body.data.message_id]);
    assert.equal((await app.deps.db("messages").where("subscription_id", other.id)).length, 0);
  });

  test("the same key on another send endpoint (template) answers 409", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const template = await app.request("POST", "/templates", { key: apiKey, body: { name: `idem-${Date.now()}`, title_template: "Hi", body_template: "there" } });
    assert.equal(template.status, 201, JSON.stringify(template.body));
    const templateId = template.body.data.id ?? template.body.data.template_id;
    const headers = keyHeader();
    const direct = await app.request("POST", "/messages", { key: apiKey, headers, body: { subscription_id: sub.id, body: "direct" } });
    assert.equal(direct.status, 201);
    const viaTemplate = await app.request("POST", "/messages/template", { key: apiKey, headers, body: { subscription_id: sub.id, template_id: templateId } });
    assert.equal(viaTemplate.status, 409);
    assert.equal(viaTemplate.body.error.code, "idempotency_key_reused");

    // And the template endpoint is idempotent on its own request, refusing other variables.
    const templateHeaders = keyHeader();
    const sent = await app.request("POST", "/messages/template", { key: apiKey, headers: templateHeaders, body: { subscription_id: sub.id, template_id: templateId, variables: { n: 1 } } });
    assert.equal(sent.status, 201, JSON.stringify(sent.body));
    const again = await app.request("POST", "/messages/template", { key: apiKey, headers: templateHeaders, body: { subscription_id: sub.id, template_id: templateId, variables: { n: 1 } } });
    assert.equal(again.body.data.message_id, sent.body.data.message_id);
    const changed = await app.request("POST", "/messages/template", { key: apiKey, headers: templateHeaders, body: { subscription_id: sub.id, template_id: templateId, variables: { n: 2 } } });
    assert.equal(changed.status, 409);
    assert.equal((await messagesWithKey(templateHeaders["Idempotency-Key"]!)).length, 1);
  });

  test("a retry gets the first answer even when the template was disabled since", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const template = await app.request("POST", "/templates", { key: apiKey, body: { name: `idem-gone-${Date.now()}`, title_template: "Hi", body_template: "there" } });
    const templateId = template.body.data.id ?? template.body.data.template_id;
    const headers = keyHeader();
    const body = { subscription_id: sub.id, template_id: templateId };
    const sent = await app.request("POST", "/messages/template", { key: apiKey, headers, body });
    assert.equal(sent.status, 201, JSON.stringify(sent.body));
    assert.equal((await app.request("POST", `/templates/${templateId}/disable`, { key: apiKey })).status, 200);
    const retried = await app.request("POST", "/messages/template", { key: apiKey, headers, body });
    assert.equal(retried.status, 201, JSON.stringify(retried.body));
    assert.equal(retried.body.data.message_id, sent.body.data.message_id);
    const fresh = await app.request("POST", "/messages/template", { key: apiKey, headers: keyHeader(), body });
    assert.equal(fresh.body.error.code, "template_inactive", "a new request still sees the disabled template");
  });

  test("resend: the same key for the same message returns the first resend; for another message, or after a send, 409", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const failedA = await failedMessage(sub.id, "a");
    const failedB = await failedMessage(sub.id, "b");
    const headers = keyHeader();
    const resent = await app.request("POST", `/messages/${failedA}/resend`, { key: apiKey, headers });
    assert.equal(resent.status, 201, JSON.stringify(resent.body));
    assert.equal(resent.body.data.resent_from_id, failedA);
    const repeated = await app.request("POST", `/messages/${failedA}/resend`, { key: apiKey, headers });
    assert.equal(repeated.status, 201);
    assert.equal(repeated.body.data.message_id, resent.body.data.message_id);
    assert.equal(repeated.body.data.resent_from_id, failedA);

    // Before the fix this answered 201 with failedA's resend labelled resent_from_id: failedB.
    const wrongSource = await app.request("POST", `/messages/${failedB}/resend`, { key: apiKey, headers });
    assert.equal(wrongSource.status, 409, JSON.stringify(wrongSource.body));
    assert.equal(wrongSource.body.error.code, "idempotency_key_reused");
    const plainSend = await app.request("POST", "/messages", { key: apiKey, headers, body: { subscription_id: sub.id, body: "a" } });
    assert.equal(plainSend.status, 409);
    const stored = await messagesWithKey(headers["Idempotency-Key"]!);
    assert.deepEqual(stored.map((m: { resent_from_id: string }) => m.resent_from_id), [failedA]);

    const sendFirst = keyHeader();
    assert.equal((await app.request("POST", "/messages", { key: apiKey, headers: sendFirst, body: { subscription_id: sub.id, body: "a" } })).status, 201);
    assert.equal((await app.request("POST", `/messages/${failedB}/resend`, { key: apiKey, headers: sendFirst })).status, 409);
  });

  test("concurrent different requests with one key: one wins, the other is refused and leaves no message behind", async () => {
    const externalId = `idem-race-${Date.now()}`;
    const shared = await createPushSubscription(app, apiKey, { externalId });
    await createPushSubscription(app, apiKey, { externalId });
    const headers = keyHeader();
    // The fan-out shares one subscription with the single send: the loser conflicts on it and must
    // roll back the rows it inserted for the subscription it does not share.
    const [fanOut, single] = await Promise.all([
      app.request("POST", "/messages", { key: apiKey, headers, body: { external_id: externalId, body: "fan-out" } }),
      app.request("POST", "/messages", { key: apiKey, headers, body: { subscription_id: shared.id, body: "single" } }),
    ]);
    const statuses = [fanOut.status, single.status].sort();
    assert.deepEqual(statuses, [201, 409], `${JSON.stringify(fanOut.body)} ${JSON.stringify(single.body)}`);
    const stored = await messagesWithKey(headers["Idempotency-Key"]!);
    assert.equal(new Set(stored.map((m: { body: string }) => m.body)).size, 1, "only the winner's messages exist");
    assert.equal(stored.length, fanOut.status === 201 ? 2 : 1);
  });

  test("concurrent different requests with one key and no recipient in common: one 201, the other 409, one message", async () => {
    for (let trial = 0; trial < 5; trial += 1) {
      const [a, b] = [await createPushSubscription(app, apiKey), await createPushSubscription(app, apiKey)];
      const headers = keyHeader();
      const answers = await Promise.all([
        app.request("POST", "/messages", { key: apiKey, headers, body: { subscription_id: a.id, body: "to a" } }),
        app.request("POST", "/messages", { key: apiKey, headers, body: { subscription_id: b.id, body: "to b" } }),
      ]);
      assert.deepEqual(answers.map((r) => r.status).sort(), [201, 409], JSON.stringify(answers.map((r) => r.body)));
      const stored = await messagesWithKey(headers["Idempotency-Key"]!);
      assert.equal(stored.length, 1, "only the winner's message exists");
      const winner = answers.find((r) => r.status === 201)!;
      assert.equal(stored[0].id, winner.body.data.message_id);
      // The winner's retry still replays it (the loser's request did not take the key).
      const retry = await app.request("POST", "/messages", { key: apiKey, headers, body: { subscription_id: stored[0].subscription_id, body: stored[0].body } });
      assert.equal(retry.status, 201);
      assert.equal(retry.body.data.message_id, winner.body.data.message_id);
    }
  });

  test("a subscription deleted while its message is being accepted answers 404, not 500, and leaves no message", async () => {
    const sub = await createPushSubscription(app, apiKey);
    // What a user erasure does: lock the subscription, then delete it.
    const trx = await app.deps.db.transaction();
    const holder = Number((await trx.raw("select pg_backend_pid() as pid")).rows[0].pid);
    let send: ReturnType<typeof app.request<any>> | undefined;
    try {
      await trx("subscriptions").where({ id: sub.id }).forUpdate();
      send = app.request("POST", "/messages", { key: apiKey, body: { subscription_id: sub.id, body: "racing the erasure" } });
      // The insert's foreign-key check waits on the lock; only then does the delete land.
      await eventually(async () => {
        const rows = (await app.deps.db.raw("select pg_blocking_pids(pid) as blockers from pg_stat_activity where wait_event_type = 'Lock'")).rows as Array<{ blockers: number[] }>;
        return rows.some((row) => row.blockers.includes(holder)) || undefined;
      }, 10_000, 10);
      await trx("subscriptions").where({ id: sub.id }).delete();
      await trx.commit();
    } catch (error) {
      await trx.rollback();
      throw error;
    }
    const res = await send!;
    assert.equal(res.status, 404, JSON.stringify(res.body));
    assert.equal(res.body.error.code, "resource_not_found");
    assert.equal((await app.deps.db("messages").where({ subscription_id: sub.id })).length, 0);
  });

  test("messages stored before fingerprints existed (request_hash NULL) still answer any request with the key", async () => {
    const sub = await createPushSubscription(app, apiKey);
    const headers = keyHeader();
    const first = await app.request("POST", "/messages", { key: apiKey, headers, body: { subscription_id: sub.id, body: "old" } });
    await app.deps.db("messages").where("id", first.body.data.message_id).update({ request_hash: null });
    const replay = await app.request("POST", "/messages", { key: apiKey, headers, body: { subscription_id: sub.id, body: "different" } });
    assert.equal(replay.status, 201);
    assert.equal(replay.body.data.message_id, first.body.data.message_id);
  });
});
