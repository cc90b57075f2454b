import { test } from "node:test";
import assert from "node:assert/strict";
import { MESSAGE_STATUSES, decideTransition, isTerminal, planSdkAction, type MessageStatus, type TransitionName, type TransitionDecision } from "./state-machine";

// Every (action, current status) pair, spelled out: SEQ-003 §3 plus cancel and idempotent receipts.
const EXPECTED: Record<TransitionName, Record<MessageStatus, TransitionDecision>> = {
  send: { pending: "apply", errored: "apply", successful: "illegal", received: "illegal", converted: "illegal", failed: "illegal", cancelled: "illegal" },
  error: { pending: "apply", errored: "illegal", successful: "illegal", received: "illegal", converted: "illegal", failed: "illegal", cancelled: "illegal" },
  retry: { pending: "illegal", errored: "apply", successful: "illegal", received: "illegal", converted: "illegal", failed: "illegal", cancelled: "illegal" },
  fail: { pending: "apply", errored: "apply", successful: "apply", received: "illegal", converted: "illegal", failed: "illegal", cancelled: "illegal" },
  receive: { pending: "illegal", errored: "illegal", successful: "apply", received: "noop", converted: "noop", failed: "illegal", cancelled: "illegal" },
  convert: { pending: "illegal", errored: "illegal", successful: "illegal", received: "apply", converted: "noop", failed: "illegal", cancelled: "illegal" },
  cancel: { pending: "apply", errored: "apply", successful: "illegal", received: "illegal", converted: "illegal", failed: "illegal", cancelled: "noop" },
};

for (const [action, row] of Object.entries(EXPECTED) as Array<[TransitionName, Record<MessageStatus, TransitionDecision>]>) {
  for (const status of MESSAGE_STATUSES) {
    test(`${action} from ${status} → ${row[status]}`, () => {
      assert.equal(decideTransition(action, status), row[status]);
    });
  }
}

test("terminal statuses are exactly converted, failed and cancelled", () => {
  assert.deepEqual(MESSAGE_STATUSES.filter(isTerminal), ["converted", "failed", "cancelled"]);
});

test("a receipt after the receipt timeout (failed) is illegal: expiry wins, state is not rewritten", () => {
  assert.equal(decideTransition("receive", "failed"), "illegal");
});

test("SDK actions: a conversion without a prior receipt implies the receipt", () => {
  assert.deepEqual(planSdkAction("convert", "successful"), ["receive", "convert"]);
  assert.deepEqual(planSdkAction("convert", "received"), ["convert"]);
  assert.equal(planSdkAction("convert", "converted"), "noop");
  assert.deepEqual(planSdkAction("convert", "pending"), ["send", "receive", "convert"]);
  assert.deepEqual(planSdkAction("receive", "successful"), ["receive"]);
  // An errored attempt that reached the device: sent, then received (and converted).
  assert.deepEqual(planSdkAction("receive", "errored"), ["send", "receive"]);
  assert.deepEqual(planSdkAction("convert", "errored"), ["send", "receive", "convert"]);
  // Pending with the push on the device: the sender's commit was lost (a worker killed after the provider accepted it).
  assert.deepEqual(planSdkAction("receive", "pending"), ["send", "receive"]);
  assert.equal(planSdkAction("receive", "cancelled"), "illegal");
  assert.equal(planSdkAction("receive", "converted"), "noop");
  assert.equal(planSdkAction("receive", "failed"), "illegal");
});
