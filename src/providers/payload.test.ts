import { test } from "node:test";
import assert from "node:assert/strict";
import { apnsCollapseId, buildApnsPayload, buildFcmMessage, stringifyDataValue } from "./payload";
import type { PushMessage } from "./types";

const full: PushMessage = {
  messageId: "0b6f9c3e-3a43-4b53-9a32-4b5a0c1d2e3f",
  token: "tok",
  title: "Title",
  body: "Body",
  data: { str: "s", num: 3, flag: false, obj: { a: [1, "b"] } },
  badge: 2,
  sound: "ping.caf",
  category: "NEWS",
  threadId: "thread-9",
  imageUrl: "https://cdn.example/i.png",
  interruptionLevel: "time-sensitive",
  priority: "normal",
  expiration: 1_000_100,
  collapseKey: "scores",
  clickAction: "OPEN",
  androidChannelId: "alerts",
};

test("APNs payload: aps fields, custom data at top level, image_url and automata_message_id", () => {
  assert.deepEqual(buildApnsPayload(full), {
    aps: {
      alert: { title: "Title", body: "Body" },
      badge: 2,
      sound: "ping.caf",
      category: "NEWS",
      "thread-id": "thread-9",
      "mutable-content": 1,
      "interruption-level": "time-sensitive",
    },
    str: "s",
    num: 3,
    flag: false,
    obj: { a: [1, "b"] },
    image_url: "https://cdn.example/i.png",
    automata_message_id: full.messageId,
  });
});

test("APNs payload: mutable-content follows an explicit false, and is absent without image or flag", () => {
  assert.equal(buildApnsPayload({ ...full, mutableContent: false }).aps["mutable-content"], 0);
  const plain = buildApnsPayload({ messageId: "m", token: "t", body: "b" });
  assert.deepEqual(plain, { aps: { alert: { body: "b" } }, automata_message_id: "m" });
});

test("collapse id is the message id, hashed only when longer than 64 bytes", () => {
  assert.equal(apnsCollapseId("abc"), "abc");
  const long = "x".repeat(65);
  assert.equal(apnsCollapseId(long).length, 64);
  assert.equal(apnsCollapseId(long), apnsCollapseId(long), "deterministic so a redelivery still collapses");
  assert.notEqual(apnsCollapseId(long), apnsCollapseId(`${long}y`));
});

test("FCM message: stringified data, notification, android options and TTL from absolute expiration", () => {
  assert.deepEqual(buildFcmMessage(full, 1_000_000), {
    token: "tok",
    data: { str: "s", num: "3", flag: "false", obj: '{"a":[1,"b"]}', automata_message_id: full.messageId },
    notification: { title: "Title", body: "Body", imageUrl: "https://cdn.example/i.png" },
    android: {
      priority: "normal",
      ttl: 100_000,
      collapseKey: "scores",
      notification: { tag: full.messageId, clickAction: "OPEN", channelId: "alerts", sound: "ping.caf" },
    },
  });
  assert.equal(buildFcmMessage({ ...full, expiration: 5 }, 1_000_000).android?.ttl, 0, "expired messages get ttl 0 (deliver now or drop)");
  assert.deepEqual(buildFcmMessage({ messageId: "m", token: "t", body: "b" }), {
    token: "t",
    data: { automata_message_id: "m" },
    notification: { body: "b" },
    android: { notification: { tag: "m" } },
  });
  assert.equal(buildFcmMessage({ messageId: "m", token: "t", data: { k: "v" } }).android, undefined, "a data-only message has no notification to tag");
});

test("data values stringify predictably", () => {
  assert.equal(stringifyDataValue("x"), "x");
  assert.equal(stringifyDataValue(1.25), "1.25");
  assert.equal(stringifyDataValue(true), "true");
  assert.equal(stringifyDataValue({ a: null }), '{"a":null}');
  assert.equal(stringifyDataValue([1]), "[1]");
});
