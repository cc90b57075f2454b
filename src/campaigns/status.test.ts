import { test } from "node:test";
import assert from "node:assert/strict";
import { CAMPAIGN_STATUSES, apiCampaignStatus, statusToActOn, storedCampaignStatus } from "./repository";

test("statusToActOn: a deactivated application's running campaign is held as paused; nothing else changes", () => {
  for (const status of CAMPAIGN_STATUSES) {
    assert.equal(statusToActOn(status, true), status, `${status}, active application`);
    assert.equal(statusToActOn(status, false), status === "running" ? "paused" : status, `${status}, deactivated application`);
  }
});

test("the API calls running in_progress, and both names filter the stored running", () => {
  for (const status of CAMPAIGN_STATUSES) {
    const api = apiCampaignStatus(status);
    assert.equal(api, status === "running" ? "in_progress" : status);
    assert.equal(storedCampaignStatus(api), status, "round trip");
  }
  assert.equal(storedCampaignStatus("running"), "running");
});
