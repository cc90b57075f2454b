import type { Deps } from "../src/deps";

/** What an erasure removed, recorded on the erasure request. */
export interface ErasureResult {
  users: number;
  subscriptions: number;
  messages_scrubbed: number;
}

/** Activities of the GDPR erasure workflow. Each is idempotent: a retry after a crash is harmless. */
export function createUserErasureActivities(deps: Deps) {
  return {
    /**
     * Erases a user in one transaction: their messages lose all personal content (title, body, data,
     * rendered variables) but keep status and timestamps for aggregate statistics; their
     * subscriptions (device tokens, tags, device info) and the user row are deleted.
     */
    async eraseUserData(requestId: string): Promise<ErasureResult> {
      return deps.db.transaction(async (trx) => {
        const request = await trx("erasure_requests").where({ id: requestId }).forUpdate().first();
        if (!request) throw new Error(`erasure request ${requestId} not found`);
        if (request.status === "completed") return request.result as ErasureResult;
        await trx("erasure_requests").where({ id: requestId }).update({ status: "running" });
        const users = await trx("users").where({ application_id: request.application_id, external_id: request.external_id }).select("id");
        const userIds = users.map((u: { id: string }) => u.id);
        const subscriptionIds = (
          await trx("subscriptions").where("application_id", request.application_id).whereIn("user_id", userIds).select("id")
        ).map((s: { id: string }) => s.id);
        const messagesScrubbed = await trx("messages")
          .where("application_id", request.application_id)
          .where((q) => q.whereIn("user_id", userIds).orWhereIn("subscription_id", subscriptionIds))
          .update({ title: null, body: null, data: {}, user_id: null, subscription_id: null });
        const subscriptions = await trx("subscriptions").whereIn("id", subscriptionIds).delete();
        const deletedUsers = await trx("users").whereIn("id", userIds).delete();
        const result: ErasureResult = { users: deletedUsers, subscriptions, messages_scrubbed: messagesScrubbed };
        await trx("erasure_requests")
          .where({ id: requestId })
          .update({ status: "completed", completed_at: trx.fn.now(), user_id: null, result: JSON.stringify(result) });
        return result;
      });
    },
  };
}
