import crypto from "node:crypto";
import { z } from "zod";
import { TimeZoneName } from "../time-zones";

/** Largest daily or monthly allowance, in messages (a trillion: no real plan, and far from the ledger's bigint). */
export const MAX_QUOTA_MESSAGES = 1_000_000_000_000;
/** Largest price of one message in minor units: a batch's charge (≤ 500 × this) stays an exact JS integer. */
export const MAX_UNIT_PRICE = 1_000_000_000;
/**
 * Largest credit an application may hold, in minor units: below 2^53, so every balance the API
 * reads back from PostgreSQL's bigint is exact in JSON.
 */
export const MAX_CREDIT_BALANCE = 1_000_000_000_000_000;

/** Quota settings of an application (DESIGN-003 message_quotas); absent limits mean unlimited. */
export const QuotaInput = z.strictObject({
  daily_quota: z.number().int().min(0).max(MAX_QUOTA_MESSAGES).nullable().optional().describe("messages per day; null = unlimited"),
  monthly_quota: z.number().int().min(0).max(MAX_QUOTA_MESSAGES).nullable().optional().describe("messages per month; null = unlimited"),
  unit_price: z.number().int().min(0).max(MAX_UNIT_PRICE).nullable().optional().describe("price per message in minor units of billing_currency"),
  credit_balance: z.number().int().min(0).max(MAX_CREDIT_BALANCE).optional().describe("credit to add, in minor units of billing_currency; the balance may not exceed 10^15"),
  billing_currency: z.string().regex(/^[A-Z]{3}$/, "must be an ISO 4217 code like KRW").optional(),
});

/**
 * Why a PEM private key is unusable, or null. Checked at upload because the adapters would otherwise
 * find out at send time, failing every push of the application as provider_auth_failed. Messages
 * never quote the key: they end up in responses and logs.
 */
function privateKeyProblem(pem: string, expect: "ec-p256" | "rsa"): string | null {
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(pem);
  } catch {
    // OpenSSL's reason ("unsupported", "bad base64 decode") adds nothing an operator can act on.
    return "is not a readable PEM private key";
  }
  if (expect === "rsa") return key.asymmetricKeyType === "rsa" ? null : "must be the service account's RSA private key";
  // APNs tokens are ES256: apns2 signs with whatever it is given, and Apple refuses anything but a P-256 key.
  return key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1" ? null : "must be an EC P-256 key (the .p8 file from Apple)";
}

/** A refinement for a PEM private key field, reporting {@link privateKeyProblem}. */
const privateKeyPem = (expect: "ec-p256" | "rsa", missing: string) =>
  z.string().superRefine((pem, ctx) => {
    const problem = pem.includes("PRIVATE KEY") ? privateKeyProblem(pem, expect) : missing;
    if (problem !== null) ctx.addIssue({ code: "custom", message: problem });
  });

/** APNs token-auth credentials (.p8). */
export const ApnsCredentialsInput = z.strictObject({
  // Apple's team and key ids are 10 characters; anything else signs a JWT APNs refuses (InvalidProviderToken).
  team_id: z.string().regex(/^[A-Z0-9]{10}$/, "must be the 10-character Apple team id"),
  key_id: z.string().regex(/^[A-Z0-9]{10}$/, "must be the 10-character id of the .p8 key"),
  signing_key: privateKeyPem("ec-p256", "must be the .p8 PEM"),
  // Sent as apns-topic: letters, digits, '-' and '.', as Apple allows in a bundle id.
  bundle_id: z.string().regex(/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/, "must be a bundle id like com.example.app"),
  // Production unless said otherwise (COMP-002): development builds are routed to the sandbox by their
  // subscription's test_type anyway, while a sandbox default sent every production token to the sandbox,
  // which answers BadDeviceToken and so unsubscribed (−10) every real device on the first send.
  production: z.boolean().default(true),
});

/** FCM service account credentials (the JSON file Google issues). */
export const FcmCredentialsInput = z.strictObject({
  service_account: z.looseObject({
    // Goes into the send URL (projects/<id>/messages:send): empty or with '/' it names no project.
    project_id: z.string().regex(/^[A-Za-z0-9.:-]+$/, "must be the Firebase project id"),
    client_email: z.string().min(1),
    private_key: privateKeyPem("rsa", "must be the service account's PEM private key"),
  }),
});

/** Provider secrets; stored encrypted and never returned. */
export const ProviderCredentialsInput = z.strictObject({
  apns: ApnsCredentialsInput.nullable().optional(),
  fcm: FcmCredentialsInput.nullable().optional(),
});

const Tier = z.enum(["basic", "premium", "enterprise"]);
const Timezone = TimeZoneName;

const CampaignCeiling = z
  .number()
  .int()
  .min(1)
  .max(10_000_000)
  .nullable()
  .optional()
  .describe("ceiling over all of the application's campaigns together, recipients per minute; null = none");

/** Body of `POST /admin/applications`. */
export const CreateApplicationBody = z.strictObject({
  name: z.string().trim().min(1).max(200),
  quota: QuotaInput.optional(),
  settings: z.record(z.string(), z.unknown()).optional(),
  provider_credentials: ProviderCredentialsInput.optional(),
  rate_limit_tier: Tier.optional(),
  timezone: Timezone.optional(),
  campaign_max_per_minute: CampaignCeiling,
});

/** Body of `PATCH /admin/applications/:id`. */
export const UpdateApplicationBody = z.strictObject({
  name: z.string().trim().min(1).max(200).optional(),
  quota: QuotaInput.optional(),
  settings: z.record(z.string(), z.unknown()).optional(),
  provider_credentials: ProviderCredentialsInput.optional(),
  rate_limit_tier: Tier.optional(),
  timezone: Timezone.optional(),
  campaign_max_per_minute: CampaignCeiling,
  is_active: z.boolean().optional(),
});

/** Body of `POST /admin/applications/:id/api-keys`. */
export const RotateKeyBody = z.strictObject({
  name: z.string().max(200).optional(),
  grace_period_seconds: z.number().int().min(0).max(30 * 86_400).default(0).describe("old keys keep working this long"),
});

/** Provider credentials as stored (decrypted form). */
export type ProviderCredentials = z.infer<typeof ProviderCredentialsInput>;
