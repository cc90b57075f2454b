import { z } from "zod";
import { PaginationQuery, PaginationSchema } from "../http/pagination";
import { uuidField } from "../http/validation";
import { STATUS_NAMES } from "./status";
import { TimeZoneName } from "../time-zones";

/** REF-001 §2.1 subscription types (the `subscription_type` column's CHECK list). */
export const SUBSCRIPTION_TYPES = ["iOSPush", "AndroidPush", "Email", "SMS", "KakaoTalk", "InAppMessage"] as const;

/** One of {@link SUBSCRIPTION_TYPES}. */
export type SubscriptionType = (typeof SUBSCRIPTION_TYPES)[number];

/** Narrows a string to a subscription type; the API answers `invalid_subscription_type` when this is false. */
export function isSubscriptionType(value: string): value is SubscriptionType {
  return (SUBSCRIPTION_TYPES as readonly string[]).includes(value);
}

/** Most tags one subscription may carry. */
export const MAX_TAGS = 100;
/** Longest tag key. */
export const MAX_TAG_KEY_LENGTH = 128;
/** Longest tag value (after numbers and booleans become strings). */
export const MAX_TAG_VALUE_LENGTH = 256;

/** An IANA time zone name such as `Asia/Seoul`. */
export const Timezone = TimeZoneName;

/** A BCP 47-like language tag as SDKs send it: ko, en-US, zh_Hant_TW. */
export const LANGUAGE_TAG = /^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*$/;

/** An ISO 3166-1 alpha-2 country code in any case, stored (and compared) upper-case. */
export const CountryCode = z
  .string()
  .trim()
  .regex(/^[A-Za-z]{2}$/, "must be an ISO 3166-1 alpha-2 code like KR")
  .transform((code) => code.toUpperCase());

// Java's Locale.toString() on Android 7+ for a locale with a script: zh_CN_#Hans, sr__#Latn.
const JAVA_LOCALE_WITH_SCRIPT = /^([A-Za-z]{2,3})_([A-Za-z]{2}|\d{3})?_#([A-Za-z]{4})$/;

/**
 * What SDKs send for the device's language and region, as they read it from the OS, made storable
 * instead of refused: a refusal fails the whole registration, and the SDK sends the same values
 * on every launch, so the device would never be subscribed. An empty value is none; a Java locale
 * with a script becomes its BCP 47 tag (zh_CN_#Hans → zh-Hans-CN); a numeric UN M.49 region
 * (419, Latin America, from es-419) names no country and is stored as none.
 */
export function normaliseDeviceLocale(field: "device_language" | "country_code", value: unknown): unknown {
  if (typeof value !== "string") return value;
  const trimmed = value.trim();
  if (trimmed === "") return null;
  if (field === "country_code") return /^\d{3}$/.test(trimmed) ? null : trimmed;
  const java = JAVA_LOCALE_WITH_SCRIPT.exec(trimmed);
  return java ? [java[1], java[3], java[2]].filter(Boolean).join("-") : trimmed;
}

/** The application's own user id (REF-001 `user_id`, stored as `users.external_id`). */
export const ExternalUserId = z.string().trim().min(1).max(255).describe("your own user id (users.external_id), e.g. u1234567890");

const optionalText = (max: number) => z.string().trim().max(max).nullable().optional();

/** Device metadata the SDK collects (SEQ-001 §2.2); null clears a field on update. */
export const DeviceInfo = z.strictObject({
  device_model: optionalText(255),
  device_os: optionalText(255).describe("e.g. iOS 15.4; the trailing version number is also stored as os_version"),
  device_language: z.preprocess(
    (value) => normaliseDeviceLocale("device_language", value),
    z.string().max(35).regex(LANGUAGE_TAG, "must be a language tag like ko or en-US").nullable().optional(),
  ),
  app_version: optionalText(64),
  sdk_version: optionalText(64),
  country_code: z.preprocess((value) => normaliseDeviceLocale("country_code", value), CountryCode.nullable().optional()),
  test_type: z.number().int().min(0).max(2).nullable().optional().describe("0 production, 1 development (sent to the APNs sandbox), 2 ad-hoc (production APNs, marked as a test device)"),
  timezone: Timezone.nullable().optional(),
});

/** {@link DeviceInfo} after validation. */
export type DeviceInfoInput = z.output<typeof DeviceInfo>;

/** A tag key as stored on a subscription. */
export const TagKey = z.string().min(1).max(MAX_TAG_KEY_LENGTH);
/** A tag value as stored on a subscription: numbers and booleans become strings. */
export const TagValue = z
  .union([
    z.string(),
    // 12345678901234567890 arrives already rounded to a double: stored as "12345678901234567000",
    // it would match no device whose SDK sent the id as text.
    z.number().refine((n) => !Number.isInteger(n) || Number.isSafeInteger(n), "an integer this large loses digits in JSON: send it as a string"),
    z.boolean(),
  ])
  .transform((value) => String(value))
  .pipe(z.string().max(MAX_TAG_VALUE_LENGTH, `must be at most ${MAX_TAG_VALUE_LENGTH} characters`));

/** Tags to add or overwrite; numbers and booleans are accepted and stored as strings. */
export const TagsInput = z
  .record(TagKey, TagValue)
  .refine((tags) => Object.keys(tags).length <= MAX_TAGS, `at most ${MAX_TAGS} tags per subscription`)
  .describe(`key (1-${MAX_TAG_KEY_LENGTH} chars) → string, number or boolean (stored as a string, at most ${MAX_TAG_VALUE_LENGTH} chars); at most ${MAX_TAGS} per subscription`);

/** Body of `POST /subscriptions` (REF-001 §2.1, SEQ-001 §2.4). */
export const CreateSubscriptionBody = z.strictObject({
  application_id: uuidField.optional().describe("sent by the SDK (SEQ-001); must be the API key's application when present"),
  type: z.string().describe("iOSPush, AndroidPush, Email, SMS, KakaoTalk or InAppMessage; anything else is invalid_subscription_type"),
  token: z.string().describe("push token, e-mail address or E.164 phone number; stored encrypted, never returned"),
  user_id: ExternalUserId.nullable().optional(),
  device_info: DeviceInfo.optional(),
  timezone: Timezone.optional(),
  tags: TagsInput.optional(),
});

/** Body of `PATCH /subscriptions/:id` (REF-001 §2.3). */
export const UpdateSubscriptionBody = z
  .strictObject({
    token: z.string().optional().describe("a new token (same rules and duplicate check as update-token)"),
    device_info: DeviceInfo.optional(),
    timezone: Timezone.nullable().optional(),
    tags: TagsInput.optional().describe("merged into the existing tags, like POST /subscriptions/:id/tags"),
  })
  .refine((body) => Object.values(body).some((value) => value !== undefined), "give at least one of token, device_info, timezone, tags");

/**
 * Optional body of `POST /subscriptions/:id/disable` and `/enable`. `reason: "user"` means the
 * end user asked (the SDK); `"api"` means the developer or a system decided server-side.
 */
export const StatusChangeBody = z.strictObject({
  reason: z.enum(["user", "api"]).optional(),
});

/** Body of `POST /subscriptions/:id/update-token` (REF-001 §2.6). */
export const UpdateTokenBody = z.strictObject({
  token: z.string().describe("the new token; stored encrypted, never returned"),
});

/** Body of `POST /subscriptions/:id/tags` (REF-001 §2.7). */
export const AddTagsBody = z.strictObject({ tags: TagsInput });

/** Body of `DELETE /subscriptions/:id/tags` (REF-001 §2.7). */
export const DeleteTagsBody = z.strictObject({
  tag_keys: z.array(TagKey).min(1).max(MAX_TAGS),
});

/** Query of `GET /subscriptions` (REF-001 §2.8); unknown parameters are rejected so a typo cannot widen the result. */
export const ListSubscriptionsQuery = z.strictObject({
  ...PaginationQuery.shape,
  user_id: ExternalUserId.optional(),
  type: z.string().optional().describe("a subscription type; anything else is invalid_subscription_type"),
  status: z
    .string()
    .regex(/^-?\d{1,3}$/, "must be an integer status code (REF-002)")
    .transform(Number)
    // A code REF-002 does not define can match nothing: say so rather than answer an empty page.
    .refine((code) => code > 0 || STATUS_NAMES.has(code), "is not a REF-002 status code")
    .optional()
    .describe("a REF-002 status code; any positive code means subscribed (matches every positive status)"),
});

/** A subscription as the API returns it (REF-001 §2.2); the token only ever appears masked. */
export const SubscriptionView = z.object({
  id: z.string(),
  type: z.enum(SUBSCRIPTION_TYPES),
  user_id: z.string().nullable().describe("the user's external_id"),
  subscription_status: z.number().int(),
  token_masked: z.string().nullable(),
  device_info: z.object({
    device_model: z.string().nullable(),
    device_os: z.string().nullable(),
    device_language: z.string().nullable(),
    app_version: z.string().nullable(),
    sdk_version: z.string().nullable(),
    country_code: z.string().nullable(),
    test_type: z.number().nullable(),
  }),
  tags: z.record(z.string(), z.string()),
  timezone: z.string().nullable(),
  subscribed_at: z.string().nullable(),
  unsubscribed_at: z.string().nullable(),
  last_active_at: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
});

/** {@link SubscriptionView} as a TypeScript type. */
export type SubscriptionViewData = z.infer<typeof SubscriptionView>;

/** Response of `POST /subscriptions`: REF-001's `subscription_id` plus the full view. */
export const CreatedSubscriptionView = SubscriptionView.extend({ subscription_id: z.string() });

/** Response of `POST /subscriptions/:id/update-token`. */
export const TokenUpdatedView = SubscriptionView.extend({ token_updated_at: z.string() });

/** Response of `GET /subscriptions`. */
export const SubscriptionListView = z.object({ subscriptions: z.array(SubscriptionView), pagination: PaginationSchema });
