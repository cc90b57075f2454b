// The worker bundles this file: only workflow code (deterministic, no I/O) may be exported here.
export { userErasureWorkflow } from "./user-erasure";
export { messageWorkflow } from "./message";
export { reconcilerWorkflow } from "./reconciler";
export { campaignWorkflow, campaignBatchWorkflow } from "./campaign";
export { campaignRunWorkflow } from "./campaign-run";
