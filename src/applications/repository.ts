import type { Knex } from "knex";
import type { SecretBox } from "../crypto/secret-box";
import type { ProviderCredentials } from "./schemas";
import type { z } from "zod";
import { MAX_CREDIT_BALANCE, type QuotaInput } from "./schemas";
import { balanceOf, creditAccount, creditSourceAccount, transfer } from "../quota/ledger";
import { ApiError } from "../http/errors";
import { newId } from "../db/ids";
import { fingerprint } from "../http/idempotency";
import { UNSENT_STATUSES } from "../messages/state-machine";

/** What an application's provider credentials ciphertext is bound to: that application. */
export function providerCredentialsContext(applicationId: string): string {
  return `provider-credentials:${applicationId}`;
}

/** Opens an application's sealed provider credentials ({} for none); throws if they will not open. */
export function openProviderCredentials(secrets: SecretBox, applicationId: string, ciphertext: string | null): ProviderCredentials {
  if (!ciphertext) return {};
  return JSON.parse(secrets.decrypt(ciphertext, providerCredentialsContext(applicationId))) as ProviderCredentials;
}

/** An application's sealed provider credentials as stored (null when none are configured). */
export async function readSealedProviderCredentials(db: Knex, applicationId: string): Promise<string | null> {
  const row = await db("applications").where("id", applicationId).first<{ provider_credentials_ciphertext: string | null }>("provider_credentials_ciphertext");
  return row?.provider_credentials_ciphertext ?? null;
}

/** Merges new provider credentials over stored ones (null removes a provider) and encrypts them. */
export function sealProviderCredentials(secrets: SecretBox, applicationId: string, current: ProviderCredentials, update: ProviderCredentials): string | null {
  const merged: ProviderCredentials = { ...current };
  for (const provider of ["apns", "fcm"] as const) {
    if (update[provider] === null) delete merged[provider];
    else if (update[provider] !== undefined) (merged as Record<string, unknown>)[provider] = update[provider];
  }
  return Object.keys(merged).length === 0 ? null : secrets.encrypt(JSON.stringify(merged), providerCredentialsContext(applicationId));
}

/**
 * A top-up's request, when the operator sent an Idempotency-Key: the same key tops up once, so a
 * PATCH retried after a lost response (which a client treats as safe to repeat) never adds the
 * credit twice.
 */
export interface TopUpRequest {
  idempotencyKey: string;
  /** Fingerprint of the request's quota: the same key with a different quota is refused. */
  fingerprint: string;
}

/** Creates or updates the quota row and tops up the credit balance through the ledger. */
export async function applyQuota(trx: Knex.Transaction, applicationId: string, quota: z.infer<typeof QuotaInput>, topUp?: TopUpRequest): Promise<void> {
  const existing = (await trx("message_quotas").where("application_id", applicationId).forUpdate().first()) as { billing_currency: string } | undefined;
  if (existing && quota.billing_currency !== undefined && quota.billing_currency !== existing.billing_currency) {
    // A message not sent yet is refunded into the account it was charged from: after a switch
    // that credit would land in the old currency, unseen and unspendable. Whatever the price is
    // now (it may have been lowered to 0 after the charge), and campaigns refund a batch's unsent
    // messages when the batch settles, so none may be running either.
    const unsent = await trx("messages").where("application_id", applicationId).whereIn("status", UNSENT_STATUSES).first("id");
    const activeCampaign = await trx("message_campaigns").where("application_id", applicationId).whereIn("status", ["running", "paused"]).first("id");
    if (unsent || activeCampaign) {
      throw new ApiError("validation_error", "The request body failed validation", {
        in: "body",
        fields: {
          "quota.billing_currency": `${unsent ? "messages are still waiting to be sent" : "a campaign is still sending"} (their refunds would go to ${existing.billing_currency}); change the currency once they are settled`,
        },
      });
    }
    // Credit is kept per currency and there is no exchange rate: after a switch, the old credit
    // would sit unseen while charged sends were refused as if the application had none.
    const left = await balanceOf(trx, applicationId, creditAccount(applicationId, existing.billing_currency).code);
    if (left !== 0) {
      throw new ApiError("validation_error", "The request body failed validation", {
        in: "body",
        fields: {
          "quota.billing_currency": `the application still holds ${left} of credit in ${existing.billing_currency}; the currency can change only once that credit is used up`,
        },
      });
    }
  }
  const fields: Record<string, unknown> = {};
  for (const key of ["daily_quota", "monthly_quota", "unit_price", "billing_currency"] as const) {
    if (quota[key] !== undefined) fields[key] = quota[key];
  }
  if (existing) {
    if (Object.keys(fields).length > 0) await trx("message_quotas").where("application_id", applicationId).update(fields);
  } else {
    await trx("message_quotas").insert({ id: newId(), application_id: applicationId, ...fields });
  }
  // The quota row is locked above (FOR UPDATE): concurrent top-ups check their Idempotency-Key
  // (and the balance) one at a time. A key that already topped up answers for any later request
  // under it: the same quota is a repeat (nothing more is added), another one is refused.
  const transferKey = topUp ? `topup:${applicationId}:request-${fingerprint(topUp.idempotencyKey)}` : undefined;
  if (transferKey && topUp) {
    const previous = await trx("ledger_transfers").where("idempotency_key", transferKey).first<{ metadata: { request_fingerprint?: string } } | undefined>("metadata");
    if (previous) {
      if (previous.metadata.request_fingerprint !== topUp.fingerprint) throw new ApiError("idempotency_key_reused", undefined, { header: "Idempotency-Key" });
      return;
    }
  }
  if (quota.credit_balance && quota.credit_balance > 0) {
    const row = await trx("message_quotas").where("application_id", applicationId).first<{ billing_currency: string }>("billing_currency");
    const currency = row?.billing_currency ?? "KRW";
    const held = await balanceOf(trx, applicationId, creditAccount(applicationId, currency).code);
    if (held + quota.credit_balance > MAX_CREDIT_BALANCE) {
      throw new ApiError("validation_error", "The request body failed validation", {
        in: "body",
        fields: { "quota.credit_balance": `the application holds ${held}; with this top-up its credit would pass the ${MAX_CREDIT_BALANCE} limit` },
      });
    }
    await transfer(trx, {
      from: creditSourceAccount(applicationId, currency),
      to: creditAccount(applicationId, currency),
      amount: quota.credit_balance,
      idempotencyKey: transferKey ?? `topup:${applicationId}:${newId()}`,
      reason: "credit_topup",
      applicationId,
      ...(topUp ? { metadata: { request_fingerprint: topUp.fingerprint } } : {}),
    });
  }
}
