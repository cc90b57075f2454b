import { z } from "zod";

/** Quota settings of an application (DESIGN-003 message_quotas); absent limits mean unlimited. */
export const QuotaInput = z.strictObject({
  daily_quota: z.number().int().min(0).nullable().optional().describe("messages per day; null = unlimited"),
  monthly_quota: z.number().int().min(0).nullable().optional().describe("messages per month; null = unlimited"),
  unit_price: z.number().int().min(0).nullable().optional().describe("price per message in minor units of billing_currency"),
  credit_balance: z.number().int().min(0).optional().describe("credit to add, in minor units of billing_currency"),
  billing_currency: z.string().regex(/^[A-Z]{3}$/, "must be an ISO 4217 code like KRW").optional(),
});

/** APNs token-auth credentials (.p8). */
export const ApnsCredentialsInput = z.strictObject({
  team_id: z.string().min(1),
  key_id: z.string().min(1),
  signing_key: z.string().includes("PRIVATE KEY", { message: "must be the .p8 PEM" }),
  bundle_id: z.string().min(1),
  production: z.boolean().default(false),
});

/** FCM service account credentials (the JSON file Google issues). */
export const FcmCredentialsInput = z.strictObject({
  service_account: z.looseObject({ project_id: z.string(), client_email: z.string(), private_key: z.string() }),
});

/** Provider secrets; stored encrypted and never returned. */
export const ProviderCredentialsInput = z.strictObject({
  apns: ApnsCredentialsInput.nullable().optional(),
  fcm: FcmCredentialsInput.nullable().optional(),
});

const Tier = z.enum(["basic", "premium", "enterprise"]);
const Timezone = z.string().refine((tz) => {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
    return true;
  } catch {
    // RangeError for an unknown zone: the refinement reports it.
    return false;
  }
}, "must be an IANA timezone like Asia/Seoul");

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
