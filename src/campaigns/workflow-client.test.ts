import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig } from "../config";
import { campaignWorkflowInput, type StartableCampaign } from "./workflow-client";
import type { CampaignStatus } from "./repository";

describe("campaign workflow input: whether the workflow waits for scheduled_at", () => {
  const config = loadConfig({});
  const future = new Date(Date.now() + 3_600_000);
  const cases: Array<{ status: CampaignStatus; scheduledAt: Date | null; waitsUntil: number | null }> = [
    { status: "scheduled", scheduledAt: future, waitsUntil: future.getTime() },
    { status: "draft", scheduledAt: future, waitsUntil: future.getTime() },
    // Executed early, its workflow started late (the reconciler, or the execute route itself).
    { status: "running", scheduledAt: future, waitsUntil: null },
    { status: "paused", scheduledAt: future, waitsUntil: null },
    // Cancelled: the cleanup run must not sit out the hour either.
    { status: "cancelled", scheduledAt: future, waitsUntil: null },
    { status: "running", scheduledAt: null, waitsUntil: null },
  ];
  for (const c of cases) {
    test(`${c.status}, scheduled_at ${c.scheduledAt ? "in an hour" : "none"} → ${c.waitsUntil === null ? "starts at once" : "waits"}`, () => {
      const campaign: StartableCampaign = { id: "c1", application_id: "a1", status: c.status, scheduled_at: c.scheduledAt, throttle_per_minute: null, delivery: null, schedule: null };
      assert.equal(campaignWorkflowInput(config, campaign).scheduledAt, c.waitsUntil);
    });
  }
});
