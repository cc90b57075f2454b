import type { Deps } from "../src/deps";
import { createUserErasureActivities } from "./user-erasure";
import { createMessageActivities } from "./messages";
import { createReconcilerActivities } from "./reconciler";
import { createCampaignActivities } from "./campaigns";
import { createCampaignRunActivities } from "./campaign-runs";

/** Every activity the worker registers, bound to the process dependencies. */
export function createActivities(deps: Deps) {
  // Campaign batches hold connections across provider calls: on a pool of their own (workers),
  // a running campaign leaves single messages' sends theirs.
  const campaignDeps = deps.campaignDb ? { ...deps, db: deps.campaignDb } : deps;
  return {
    ...createUserErasureActivities(deps),
    ...createMessageActivities(deps),
    ...createReconcilerActivities(deps),
    ...createCampaignActivities(campaignDeps),
    ...createCampaignRunActivities(campaignDeps),
  };
}
