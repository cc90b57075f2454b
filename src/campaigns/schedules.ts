import type { Deps } from "../deps";
import type { CampaignRow } from "./repository";

/** Creates the Temporal Schedule of a recurring campaign (idempotent). */
export async function ensureCampaignSchedule(_deps: Deps, campaign: Pick<CampaignRow, "id">): Promise<void> {
  throw new Error(`recurring campaign ${campaign.id}: schedules are not wired yet`);
}
