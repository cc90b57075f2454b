import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { ApnsError, Notification } from "apns2";
import { createLogger, redactRequestUrl, serializeError } from "./logger";

test("request URLs lose external user ids (path and query) but keep routes, UUIDs and plain filters", () => {
  const cases: Array<[string, string]> = [
    ["/api/v1/users/bob%40example.com/subscriptions", "/api/v1/users/[redacted]/subscriptions"],
    ["/api/v1/users/bob", "/api/v1/users/[redacted]"],
    ["/api/v1/Users/bob%40example.com", "/api/v1/Users/[redacted]"],
    ["/api/v1/USERS/bob/subscriptions", "/api/v1/USERS/[redacted]/subscriptions"],
    ["/api/v1/users/IDENTIFY", "/api/v1/users/IDENTIFY"],
    ["/api/v1/users/identify", "/api/v1/users/identify"],
    ["/api/v1/users/erasure-requests/0195f0c2-0000-7000-8000-000000000000", "/api/v1/users/erasure-requests/0195f0c2-0000-7000-8000-000000000000"],
    ["/api/v1/messages?external_id=bob%40example.com&page=2", "/api/v1/messages?external_id=[redacted]&page=2"],
    ["/api/v1/subscriptions?user_id=u-42&per_page=50&status=1", "/api/v1/subscriptions?user_id=[redacted]&per_page=50&status=1"],
    ["/api/v1/templates?search=welcome%20jane", "/api/v1/templates?search=[redacted]"],
    ["/api/v1/messages/0195f0c2-0000-7000-8000-000000000000", "/api/v1/messages/0195f0c2-0000-7000-8000-000000000000"],
  ];
  for (const [url, logged] of cases) assert.equal(redactRequestUrl(url), logged, url);
});

test("errors are logged without PostgreSQL's value-quoting fields", () => {
  const error = Object.assign(new Error("duplicate key value violates unique constraint"), {
    code: "23505",
    constraint: "users_external_id_key",
    detail: "Key (external_id)=(jane@example.com) already exists.",
    where: "JSON data, line 1: {\"name\": \"Jane\"",
  });
  const logged = serializeError(error) as Record<string, unknown>;
  // pino-http hands serializers an error it has already turned into a plain object.
  const alreadySerialized = serializeError({ type: "DatabaseError", message: error.message, code: "23505", detail: error.detail, where: error.where }) as Record<string, unknown>;
  assert.deepEqual(Object.keys(alreadySerialized).sort(), ["code", "message", "type"]);
  assert.equal(logged.code, "23505");
  assert.equal(logged.constraint, "users_external_id_key");
  assert.equal(logged.message, error.message);
  assert.equal(logged.detail, undefined);
  assert.equal(logged.where, undefined);
  // Each error of an AggregateError (nested ones too) is written with all its fields.
  const aggregate = serializeError(new AggregateError([error, new AggregateError([error], "inner")], "provider clients threw")) as { aggregateErrors: Array<Record<string, unknown>> };
  assert.equal(aggregate.aggregateErrors[0]!.code, "23505");
  assert.equal(aggregate.aggregateErrors[0]!.detail, undefined);
  assert.equal(aggregate.aggregateErrors[0]!.where, undefined);
  assert.doesNotMatch(JSON.stringify(aggregate), /jane@example\.com|JSON data/);
});

test("secret field names are redacted at any depth up to four, and under `error` errors keep their message", () => {
  const lines: string[] = [];
  const logger = createLogger("info", "t", new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(chunk.toString()), done()) }));
  logger.info({ token: "tok-0", a: { signingKey: "key-1" }, b: { c: { api_key: "key-2" } }, d: { e: { f: { private_key: "key-3" } } } }, "x");
  logger.error({ error: new Error("activity exploded") }, "Activity failed");
  const [first, second] = lines.map((l) => JSON.parse(l) as Record<string, any>);
  assert.ok(!/tok-0|key-1|key-2|key-3/.test(JSON.stringify(first)), JSON.stringify(first));
  assert.equal(first!.d.e.f.private_key, "[redacted]");
  assert.equal(second!.error.message, "activity exploded");
});

test("a provider error or credential object logged whole shows neither the device token, the payload nor the credential", () => {
  const lines: string[] = [];
  const logger = createLogger("info", "t", new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(chunk.toString()), done()) }));
  // apns2's error carries its notification (device token and alert) as enumerable fields.
  const notification = new Notification("a1b2c3d4e5f60718", { alert: "Hi Jane, your order shipped" });
  logger.error({ err: new ApnsError({ statusCode: 400, notification, response: { reason: "BadDeviceToken", timestamp: 0 } }) }, "send failed");
  logger.error({ provider: { accessToken: "ya29.secret", serviceAccount: { private_key: "pk" }, service_account: "{}" } }, "credential");
  const text = lines.join("\n");
  for (const secret of ["a1b2c3d4e5f60718", "Hi Jane", "ya29.secret", "pk\""]) assert.ok(!text.includes(secret), `${secret} in ${text}`);
  assert.match(text, /BadDeviceToken/, "the reason stays");
});
