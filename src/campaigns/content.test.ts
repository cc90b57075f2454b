import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { assertCampaignSendable, campaignPlatforms, campaignPushOptions, messageOptionsAt } from "./content";
import { remainingRecipients, apiCampaignStatus, storedCampaignStatus } from "./repository";
import { ApiError } from "../http/errors";
import { NOW_OR_NEVER } from "../messages/push-options";

const NOW = new Date("2026-12-01T09:00:00.500Z");
const NOW_S = Math.floor(NOW.getTime() / 1000);

describe("campaign push options", () => {
  test("ttl_seconds stays relative in the campaign and is fixed when a message is created", () => {
    const created = new Date(NOW.getTime() - 86_400_000);
    const stored = campaignPushOptions({ ttl_seconds: 600, badge: 2, title: "not an option" }, created);
    // The absolute expiration is for the previous release's workers only; this release overrides it.
    assert.deepEqual(stored, { ttl_seconds: 600, badge: 2, expiration: Math.floor(created.getTime() / 1000) + 600 });
    assert.deepEqual(messageOptionsAt(stored, NOW), { badge: 2, ttl_seconds: 600, expiration: NOW_S + 600 });
    const hoursLater = new Date(NOW.getTime() + 5 * 3_600_000);
    assert.equal(messageOptionsAt(stored, hoursLater).expiration, NOW_S + 5 * 3_600 + 600);
  });

  test("a campaign created before the rule keeps its absolute expiration", () => {
    assert.deepEqual(messageOptionsAt({ expiration: 1_800_000_000, sound: "a" }, NOW), { expiration: 1_800_000_000, sound: "a" });
    assert.deepEqual(messageOptionsAt(null, NOW), {});
    assert.deepEqual(messageOptionsAt({ ttl_seconds: 0 }, NOW), { ttl_seconds: 0, expiration: NOW_OR_NEVER }, "now or never is 0 to the providers, whenever the batch runs");
  });
});

describe("campaign content validation", () => {
  test("both providers unless subscription_types restricts them", () => {
    assert.deepEqual(campaignPlatforms({}), ["apns", "fcm"]);
    assert.deepEqual(campaignPlatforms({ subscription_types: ["iOSPush"] }), ["apns"]);
    assert.deepEqual(campaignPlatforms({ subscription_types: ["AndroidPush", "iOSPush"] }), ["fcm", "apns"]);
  });

  test("oversized or reserved content is refused with POST /messages' codes", () => {
    const refused = (content: { title?: string; body?: string; data?: Record<string, unknown> }, criteria = {}) => {
      try {
        assertCampaignSendable({ title: content.title ?? null, body: content.body ?? "b", data: content.data ?? {}, options: {} }, criteria, NOW);
      } catch (error) {
        assert.ok(error instanceof ApiError);
        return error.code;
      }
      return null;
    };
    assert.equal(refused({ title: "x".repeat(200) }), "message_too_large");
    assert.equal(refused({ body: "x".repeat(5_000) }), "message_too_large");
    assert.equal(refused({ data: { from: "me" } }), "invalid_message_content");
    // "from" is reserved by FCM only: an iOS-only campaign may carry it.
    assert.equal(refused({ data: { from: "me" } }, { subscription_types: ["iOSPush"] }), null);
    assert.equal(refused({ title: "ok" }), null);
  });
});

describe("campaign stats", () => {
  const counts = { total: 10, successful: 8, received: 0, converted: 0, failed: 0, cancelled: 0, pending: 2 };

  test("remaining counts recipients whose messages are not created yet", () => {
    assert.equal(remainingRecipients({ status: "running", audience_size: 60 }, counts), 52);
    assert.equal(remainingRecipients({ status: "paused", audience_size: 60 }, counts), 52);
    // The audience shrank after it was counted: never below the unsent messages.
    assert.equal(remainingRecipients({ status: "running", audience_size: 5 }, counts), 2);
    // Not started yet, or started before the audience was recorded: only messages count.
    assert.equal(remainingRecipients({ status: "running", audience_size: null }, counts), 2);
    // A finished campaign creates no more messages.
    assert.equal(remainingRecipients({ status: "completed", audience_size: 60 }, counts), 2);
    assert.equal(remainingRecipients({ status: "cancelled", audience_size: 60 }, { ...counts, pending: 0 }), 0);
  });

  test("the API says in_progress for the stored running, and reads it back in filters", () => {
    assert.equal(apiCampaignStatus("running"), "in_progress");
    assert.equal(apiCampaignStatus("paused"), "paused");
    assert.equal(storedCampaignStatus("in_progress"), "running");
    assert.equal(storedCampaignStatus("running"), "running");
    assert.equal(storedCampaignStatus("scheduled"), "scheduled");
  });
});
