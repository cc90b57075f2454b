import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { canTransition, nextStatusFor, statusClass, statusName, SubscriptionStatus, type StatusAction, type TransitionRefusal } from "./status";

const S = SubscriptionStatus;
const userDisable: StatusAction = { type: "disable", actor: "user" };
const apiDisable: StatusAction = { type: "disable", actor: "api" };
const userEnable: StatusAction = { type: "enable", actor: "user" };
const apiEnable: StatusAction = { type: "enable", actor: "api" };
const tokenUpdated: StatusAction = { type: "token_updated" };
const unregistered: StatusAction = { type: "delivery_failed", status: S.PUSH_UNSUBSCRIBED };

/** [label, action, from, expected: resulting status or the refusal]. */
const TABLE: Array<[string, StatusAction, number, number | TransitionRefusal]> = [
  // disable by the user (SDK): always -2
  ["user disable from active", userDisable, 1, -2],
  ["user disable from API-disabled", userDisable, -31, -2],
  ["user disable from a delivery error", userDisable, -10, -2],
  ["user disable from never subscribed", userDisable, 0, -2],
  ["user disable from -22", userDisable, -22, -2],
  ["user disable when already -2", userDisable, -2, -2],
  // disable through the API: -31, but never over the user's own opt-out
  ["api disable from active", apiDisable, 1, -31],
  ["api disable keeps -2", apiDisable, -2, -2],
  ["api disable keeps -22", apiDisable, -22, -22],
  ["api disable when already -31", apiDisable, -31, -31],
  ["api disable from a delivery error", apiDisable, -10, -31],
  ["api disable from pending double opt-in", apiDisable, -98, -31],
  // enable through the API: only from -31 (REF-002 §8.2)
  ["api enable when active", apiEnable, 1, 1],
  ["api enable from -31", apiEnable, -31, 1],
  ["api enable from -2 needs the user", apiEnable, -2, "user_consent_required"],
  ["api enable from -22 needs the user", apiEnable, -22, "user_consent_required"],
  ["api enable from -45 needs the user", apiEnable, -45, "user_consent_required"],
  ["api enable from never subscribed needs the user", apiEnable, 0, "user_consent_required"],
  ["api enable from -99 needs the user", apiEnable, -99, "user_consent_required"],
  ["api enable from pending double opt-in needs the user", apiEnable, -98, "user_consent_required"],
  ["api enable from -10 needs a token update", apiEnable, -10, "token_update_required"],
  ["api enable from -14 needs a token update", apiEnable, -14, "token_update_required"],
  ["api enable from -42 needs a token update", apiEnable, -42, "token_update_required"],
  // enable by the user: the user's consent resolves everything but a broken token
  ["user enable from -2", userEnable, -2, 1],
  ["user enable from -31", userEnable, -31, 1],
  ["user enable from -22", userEnable, -22, 1],
  ["user enable from -18", userEnable, -18, 1],
  ["user enable from never subscribed", userEnable, 0, 1],
  ["user enable from pending double opt-in", userEnable, -98, 1],
  ["user enable from -10 needs a token update", userEnable, -10, "token_update_required"],
  ["user enable when active keeps the value", userEnable, 2, 2],
  // token update resolves delivery errors only
  ["token update from -10", tokenUpdated, -10, 1],
  ["token update from -4", tokenUpdated, -4, 1],
  ["token update from an unknown negative code", tokenUpdated, -27, 1],
  ["token update keeps -2", tokenUpdated, -2, -2],
  ["token update keeps -31", tokenUpdated, -31, -31],
  ["token update keeps -22", tokenUpdated, -22, -22],
  ["token update keeps active", tokenUpdated, 1, 1],
  // a provider's delivery error never overwrites a decision
  ["unregistered from active", unregistered, 1, -10],
  ["unregistered replaces another delivery error", unregistered, -14, -10],
  ["unregistered from never subscribed", unregistered, 0, -10],
  ["unregistered keeps -2", unregistered, -2, -2],
  ["unregistered keeps -31", unregistered, -31, -31],
  ["unregistered keeps -22", unregistered, -22, -22],
];

describe("nextStatusFor (REF-002 §8.2)", () => {
  for (const [label, action, from, expected] of TABLE) {
    test(label, () => {
      const result = nextStatusFor(action, from);
      if (typeof expected === "number") {
        assert.ok(result.allowed, `expected ${from} → ${expected}, got a refusal`);
        assert.equal(result.to, expected);
        assert.equal(result.changed, expected !== from);
        assert.equal(canTransition(action, from), true);
      } else {
        assert.ok(!result.allowed, `expected a refusal from ${from}`);
        assert.equal(result.refusal, expected);
        assert.equal(canTransition(action, from), false);
      }
    });
  }

  test("event types name what happened", () => {
    const eventOf = (action: StatusAction, from: number) => {
      const result = nextStatusFor(action, from);
      return result.allowed ? result.eventType : undefined;
    };
    assert.equal(eventOf(userDisable, 1), "unsubscribed");
    assert.equal(eventOf(apiDisable, 1), "disabled");
    assert.equal(eventOf(apiEnable, -31), "enabled");
    assert.equal(eventOf(tokenUpdated, -10), "token_updated");
    assert.equal(eventOf(unregistered, 1), "delivery_failed");
  });
});

describe("status classification", () => {
  const CLASSES: Array<[number, ReturnType<typeof statusClass>, string]> = [
    [1, "subscribed", "SUBSCRIBED"],
    [7, "subscribed", "SUBSCRIBED"],
    [0, "never_subscribed", "NEVER_SUBSCRIBED"],
    [-99, "never_subscribed", "NEVER_SUBSCRIBED"],
    [-98, "pending_double_opt_in", "PENDING_DOUBLE_OPT_IN"],
    [-2, "unsubscribed", "UNSUBSCRIBED"],
    [-31, "disabled_by_api", "DISABLED_BY_API"],
    [-22, "needs_user_consent", "MANUALLY_UNSUBSCRIBED"],
    [-54, "needs_user_consent", "SMS_BLOCKED"],
    [-10, "delivery_error", "PUSH_UNSUBSCRIBED"],
    [-5, "delivery_error", "ANDROID_SUPPORT_ERROR"],
    [-42, "delivery_error", "HARD_BOUNCE"],
    [-74, "delivery_error", "SDK_INIT_FAILED"],
    [-27, "delivery_error", "UNKNOWN"],
  ];
  for (const [code, cls, name] of CLASSES) {
    test(`${code} is ${cls} (${name})`, () => {
      assert.equal(statusClass(code), cls);
      assert.equal(statusName(code), name);
    });
  }
});
