import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { assertCampaignSendable, campaignPlatforms, campaignPushOptions, messageOptionsAt } from "./content";
import { campaignRates, remainingRecipients, reportedCounts, sumCounts, apiCampaignStatus, storedCampaignStatus, type CampaignCounts } from "./repository";
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

  test("reported counts: successful = accepted by the provider (also when its receipt later timed out), failed = never accepted", () => {
    const zero: CampaignCounts = { total: 0, failed_after_sent: 0, pending: 0, errored: 0, successful: 0, received: 0, converted: 0, failed: 0, cancelled: 0 };
    const cases: Array<{ name: string; n: Partial<CampaignCounts>; expect: Partial<ReturnType<typeof reportedCounts>> }> = [
      { name: "sending", n: { total: 10, pending: 3, errored: 1, successful: 6 }, expect: { successful: 6, failed: 0, pending: 4, received: 0 } },
      { name: "receipts in", n: { total: 10, successful: 4, received: 3, converted: 2, failed: 1 }, expect: { successful: 9, received: 5, converted: 2, failed: 1 } },
      // REF-001 §6.5: 5,420 sent to, 5,380 accepted, 4,930 confirmed by their device.
      { name: "after the receipt window", n: { total: 5420, received: 4800, converted: 130, failed: 490, failed_after_sent: 450 }, expect: { successful: 5380, received: 4930, failed: 40 } },
      { name: "cancelled", n: { total: 5, cancelled: 2, successful: 3 }, expect: { successful: 3, cancelled: 2, failed: 0 } },
    ];
    for (const c of cases) {
      const reported = reportedCounts({ ...zero, ...c.n });
      for (const [key, value] of Object.entries(c.expect)) assert.equal(reported[key as keyof typeof reported], value, `${c.name}: ${key}`);
      assert.equal(reported.successful + reported.failed + reported.cancelled + reported.pending, reported.total, `${c.name}: the counts add up to the total`);
    }
  });

  test("rates (SEQ-003 §5.1): delivery of attempted messages only, so waiting or cancelled ones do not lower it; receive of accepted; conversion of received", () => {
    const zero: CampaignCounts = { total: 0, failed_after_sent: 0, pending: 0, errored: 0, successful: 0, received: 0, converted: 0, failed: 0, cancelled: 0 };
    const cases: Array<{ name: string; n: Partial<CampaignCounts>; expect: ReturnType<typeof campaignRates> }> = [
      { name: "nothing yet", n: {}, expect: { delivery_rate: 0, receive_rate: 0, conversion_rate: 0 } },
      // 8,000 created, 3,000 out, none failed: 100 %, not 37.5 %.
      { name: "mid-send", n: { total: 8000, pending: 5000, successful: 3000 }, expect: { delivery_rate: 100, receive_rate: 0, conversion_rate: 0 } },
      { name: "cancelled after a pause", n: { total: 8000, cancelled: 5000, successful: 2990, failed: 10 }, expect: { delivery_rate: 99.67, receive_rate: 0, conversion_rate: 0 } },
      // An errored message was attempted: it counts against delivery until a retry succeeds.
      { name: "errored waiting for a retry", n: { total: 4, successful: 3, errored: 1 }, expect: { delivery_rate: 75, receive_rate: 0, conversion_rate: 0 } },
      // REF-001 §6.5: 5,380 of 5,420 accepted (99.26), 4,930 received (91.64 of accepted), 1,245 converted (25.25 of received).
      { name: "REF-001 example", n: { total: 5420, successful: 0, received: 3685, converted: 1245, failed: 490, failed_after_sent: 450 }, expect: { delivery_rate: 99.26, receive_rate: 91.64, conversion_rate: 25.25 } },
    ];
    for (const c of cases) assert.deepEqual(campaignRates({ ...zero, ...c.n }), c.expect, c.name);
  });

  test("per-type counts add up to the campaign's totals, every counter included", () => {
    const zero: CampaignCounts = { total: 0, failed_after_sent: 0, pending: 0, errored: 0, successful: 0, received: 0, converted: 0, failed: 0, cancelled: 0 };
    const ios: CampaignCounts = { ...zero, total: 6, successful: 2, received: 1, failed: 2, failed_after_sent: 1, pending: 1 };
    const android: CampaignCounts = { ...zero, total: 5, converted: 1, errored: 2, cancelled: 2 };
    assert.deepEqual(sumCounts([ios, android]), { total: 11, failed_after_sent: 1, pending: 1, errored: 2, successful: 2, received: 1, converted: 1, failed: 2, cancelled: 2 });
    assert.deepEqual(sumCounts([]), zero);
  });

  test("the API says in_progress for the stored running, and reads it back in filters", () => {
    assert.equal(apiCampaignStatus("running"), "in_progress");
    assert.equal(apiCampaignStatus("paused"), "paused");
    assert.equal(storedCampaignStatus("in_progress"), "running");
    assert.equal(storedCampaignStatus("running"), "running");
    assert.equal(storedCampaignStatus("scheduled"), "scheduled");
  });
});
