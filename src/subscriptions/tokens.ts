/**
 * Channel token rules (pure): what a valid token looks like per subscription type, the one
 * normalised form that is hashed (so the same address always de-duplicates), and the masked form
 * responses may show. Plain tokens never leave this module except to be encrypted or hashed.
 */
import type { SubscriptionType } from "./schemas";

/**
 * Push tokens: APNs tokens are 64+ hex characters, FCM tokens are base64url-like with `:`; test
 * tokens of the provider simulator look like `gone-3f2a…`. One lenient rule fits all of them.
 */
const PUSH_TOKEN = /^[A-Za-z0-9:_-]{8,4096}$/;
/** A practical e-mail shape (RFC 5321 lengths): one `@`, a dotted domain, no spaces. */
const EMAIL = /^[^\s@]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;
const EMAIL_MAX_LENGTH = 254;
/** E.164: `+`, a country code that does not start with 0, at most 15 digits in all. */
const E164 = /^\+[1-9]\d{6,14}$/;
/** Separators people type inside phone numbers; removed before the E.164 check. */
const PHONE_SEPARATORS = /[\s().-]/g;

/** A token that passed validation, in the form that is encrypted and hashed. */
export type NormalizedToken = { ok: true; token: string } | { ok: false; reason: string };

/**
 * Validates a token for its subscription type and returns its canonical form: e-mail addresses are
 * lower-cased and phone numbers lose their separators, so `User@Example.com` and
 * `user@example.com` are one subscription.
 */
export function normalizeToken(type: SubscriptionType, raw: string): NormalizedToken {
  const token = raw.trim();
  switch (type) {
    case "iOSPush":
    case "AndroidPush":
    case "InAppMessage":
      return PUSH_TOKEN.test(token) ? { ok: true, token } : { ok: false, reason: "must be 8-4096 characters of A-Z, a-z, 0-9, ':', '_' or '-'" };
    case "Email": {
      const email = token.toLowerCase();
      return email.length <= EMAIL_MAX_LENGTH && EMAIL.test(email) ? { ok: true, token: email } : { ok: false, reason: "must be an e-mail address" };
    }
    case "SMS":
    case "KakaoTalk": {
      const phone = token.replace(PHONE_SEPARATORS, "");
      return E164.test(phone) ? { ok: true, token: phone } : { ok: false, reason: "must be a phone number in E.164 format, like +821012345678" };
    }
  }
}

/**
 * A masked token for responses, enough to tell devices apart but not to use one: the last 6
 * characters of a push token, `j***@example.com` for e-mail, the last 4 digits of a phone number.
 */
export function maskToken(type: SubscriptionType, token: string): string {
  switch (type) {
    case "Email": {
      const at = token.lastIndexOf("@");
      // The first code point, not code unit: half an emoji is not valid Unicode in a response.
      return at > 0 ? `${String.fromCodePoint(token.codePointAt(0)!)}***${token.slice(at)}` : "***";
    }
    case "SMS":
    case "KakaoTalk":
      return `***${token.slice(-4)}`;
    default:
      return `…${token.slice(-6)}`;
  }
}
