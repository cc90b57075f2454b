/**
 * Subscription status codes (REF-002) and the one table of rules for changing them (REF-002 §8.2).
 * Pure: no I/O, so the API, the message pipeline and the tests all share exactly these rules.
 *
 * Reading of REF-002 §8.2 implemented here:
 * - "-2 (the user unsubscribed) cannot become active without the user's consent": enabling from -2
 *   needs `actor: "user"` (the SDK acting on the user's choice); a server-side enable is refused.
 * - "-31 (disabled via the API) can be re-enabled via the API": any actor may enable from -31.
 * - "error states (-3..-79) can return to active once the error is resolved": for a delivery error
 *   (e.g. -10, the provider said the token is unregistered) the resolution is a token update, so
 *   enable is refused and update-token resets the status to 1. Codes that record the user's own
 *   refusal (-18/-19/-22 push permission, -44/-45 e-mail, -54 SMS, -61 KakaoTalk, -71 in-app) are
 *   treated like -2: only the user can resolve them.
 * - A delivery error never overwrites a decision by the user (-2, consent codes) or the developer
 *   (-31): the subscription is already undeliverable and the stronger reason must survive, or a
 *   later token update would silently re-subscribe someone who opted out.
 */

/** Named REF-002 status codes the code refers to directly. */
export const SubscriptionStatus = {
  /** REF-002 §2: 1 (and any positive value) — can receive messages. */
  SUBSCRIBED: 1,
  /** REF-002 §2: initial state, never subscribed. */
  NEVER_SUBSCRIBED: 0,
  /** REF-002 §2: the other NEVER_SUBSCRIBED code. */
  NEVER_SUBSCRIBED_ALT: -99,
  /** REF-002 §2: the user unsubscribed (SDK `disablePush`, `enabled = false`). */
  UNSUBSCRIBED: -2,
  /** REF-002 §2: disabled through the REST API by the developer or the system. */
  DISABLED_BY_API: -31,
  /** REF-002 §2: waiting for SMS/e-mail double opt-in. */
  PENDING_DOUBLE_OPT_IN: -98,
  /** REF-002 §3.3: the provider says the token is no longer registered (FCM UNREGISTERED, APNs Unregistered/BadDeviceToken). */
  PUSH_UNSUBSCRIBED: -10,
  /** REF-002 §3.3: the push permission prompt was never shown. */
  PERMISSION_NOT_REQUESTED: -18,
  /** REF-002 §3.3: the push permission prompt was shown but not answered. */
  PERMISSION_NO_RESPONSE: -19,
  /** REF-002 §3.3: the user revoked the push permission. */
  MANUALLY_UNSUBSCRIBED: -22,
  /** REF-002 §4: the recipient reported the e-mail as spam. */
  SPAM_REPORTED: -44,
  /** REF-002 §4: the recipient used the e-mail unsubscribe link. */
  EMAIL_UNSUBSCRIBED: -45,
  /** REF-002 §5: the recipient blocked SMS. */
  SMS_BLOCKED: -54,
  /** REF-002 §6: the recipient blocked KakaoTalk notifications. */
  KAKAO_BLOCKED: -61,
  /** REF-002 §7: the user turned in-app messages off. */
  INAPP_DISABLED: -71,
} as const;

/** Every code REF-002 defines, with its state name (several codes share a name there). */
export const STATUS_NAMES: ReadonlyMap<number, string> = new Map<number, string>([
  [0, "NEVER_SUBSCRIBED"],
  [-99, "NEVER_SUBSCRIBED"],
  [-2, "UNSUBSCRIBED"],
  [-31, "DISABLED_BY_API"],
  [-98, "PENDING_DOUBLE_OPT_IN"],
  // §3.1 Android
  [-3, "ANDROID_SUPPORT_ERROR"],
  [-5, "ANDROID_SUPPORT_ERROR"],
  [-4, "PLAY_SERVICES_ERROR"],
  [-8, "PLAY_SERVICES_ERROR"],
  [-11, "PLAY_SERVICES_ERROR"],
  [-12, "PLAY_SERVICES_ERROR"],
  [-6, "SENDER_ID_MISMATCH"],
  [-7, "OUTDATED_PLAY_SERVICES"],
  [-9, "OUTDATED_PLAY_SERVICES"],
  // §3.2 iOS
  [-13, "IOS_PUSH_CAPABILITY_MISSING"],
  [-14, "APNS_CONNECTION_ERROR"],
  [-16, "APNS_CONNECTION_ERROR"],
  [-17, "APNS_CONNECTION_ERROR"],
  [-15, "IOS_SIMULATOR_ERROR"],
  // §3.3 common push
  [-10, "PUSH_UNSUBSCRIBED"],
  [-18, "PERMISSION_NOT_REQUESTED"],
  [-19, "PERMISSION_NO_RESPONSE"],
  [-22, "MANUALLY_UNSUBSCRIBED"],
  [-20, "WEB_PUSH_ERROR"],
  [-21, "WEB_PUSH_ERROR"],
  [-23, "WEB_PUSH_ERROR"],
  [-24, "WEB_PUSH_ERROR"],
  // §4 e-mail
  [-40, "INVALID_EMAIL"],
  [-41, "EMAIL_SEND_FAILED"],
  [-42, "HARD_BOUNCE"],
  [-43, "SOFT_BOUNCE"],
  [-44, "SPAM_REPORTED"],
  [-45, "EMAIL_UNSUBSCRIBED"],
  // §5 SMS
  [-50, "INVALID_PHONE"],
  [-51, "SMS_SEND_FAILED"],
  [-52, "NUMBER_NOT_EXIST"],
  [-53, "NETWORK_ERROR"],
  [-54, "SMS_BLOCKED"],
  [-55, "SENDER_RESTRICTED"],
  // §6 KakaoTalk
  [-60, "KAKAO_NOT_USER"],
  [-61, "KAKAO_BLOCKED"],
  [-62, "KAKAO_NOT_FRIEND"],
  [-63, "TEMPLATE_NOT_APPROVED"],
  [-64, "SEND_LIMIT_EXCEEDED"],
  [-65, "CHANNEL_ERROR"],
  // §7 in-app
  [-70, "APP_VERSION_MISMATCH"],
  [-71, "INAPP_DISABLED"],
  [-72, "TRIGGER_MISMATCH"],
  [-73, "STORAGE_INSUFFICIENT"],
  [-74, "SDK_INIT_FAILED"],
]);

/** Error codes that record the user's own refusal; like -2, only the user can undo them. */
const USER_CONSENT_CODES: ReadonlySet<number> = new Set([
  SubscriptionStatus.PERMISSION_NOT_REQUESTED,
  SubscriptionStatus.PERMISSION_NO_RESPONSE,
  SubscriptionStatus.MANUALLY_UNSUBSCRIBED,
  SubscriptionStatus.SPAM_REPORTED,
  SubscriptionStatus.EMAIL_UNSUBSCRIBED,
  SubscriptionStatus.SMS_BLOCKED,
  SubscriptionStatus.KAKAO_BLOCKED,
  SubscriptionStatus.INAPP_DISABLED,
]);

/** How the transition rules see a status code. */
export type StatusClass =
  | "subscribed"
  | "never_subscribed"
  | "pending_double_opt_in"
  | "unsubscribed"
  | "disabled_by_api"
  | "needs_user_consent"
  | "delivery_error";

/** Classifies a status code; unknown negative codes count as delivery errors (REF-002 §1: negative ranges are errors). */
export function statusClass(status: number): StatusClass {
  if (status > 0) return "subscribed";
  if (status === SubscriptionStatus.NEVER_SUBSCRIBED || status === SubscriptionStatus.NEVER_SUBSCRIBED_ALT) return "never_subscribed";
  if (status === SubscriptionStatus.PENDING_DOUBLE_OPT_IN) return "pending_double_opt_in";
  if (status === SubscriptionStatus.UNSUBSCRIBED) return "unsubscribed";
  if (status === SubscriptionStatus.DISABLED_BY_API) return "disabled_by_api";
  if (USER_CONSENT_CODES.has(status)) return "needs_user_consent";
  return "delivery_error";
}

/** REF-002 state name of a code (`SUBSCRIBED` for any positive value, `UNKNOWN` for undocumented codes). */
export function statusName(status: number): string {
  if (status > 0) return "SUBSCRIBED";
  return STATUS_NAMES.get(status) ?? "UNKNOWN";
}

/** REF-002 §8.1 `is_active_subscription?`: only positive statuses receive messages. */
export function isSubscribed(status: number): boolean {
  return status > 0;
}

/** Who asks for a change: the end user (through the SDK) or the developer/system (server-side API call). */
export type StatusActor = "user" | "api";

/** Something that may change a subscription's status. */
export type StatusAction =
  | { type: "disable"; actor: StatusActor }
  | { type: "enable"; actor: StatusActor }
  | { type: "token_updated" }
  | { type: "delivery_failed"; status: number };

/** `subscription_events.event_type` values this domain writes. */
export type SubscriptionEventType =
  | "subscribed"
  | "unsubscribed"
  | "disabled"
  | "enabled"
  | "token_updated"
  | "delivery_failed"
  | "user_linked"
  | "user_unlinked";

/** Why a change was refused; the API answers `invalid_status_transition` with this in the details. */
export type TransitionRefusal = "user_consent_required" | "token_update_required";

/** The outcome of applying an action to a status. */
export type Transition =
  | { allowed: true; from: number; to: number; changed: boolean; eventType: SubscriptionEventType }
  | { allowed: false; from: number; refusal: TransitionRefusal; message: string };

const allow = (from: number, to: number, eventType: SubscriptionEventType): Transition => ({ allowed: true, from, to, changed: from !== to, eventType });
const refuse = (from: number, refusal: TransitionRefusal, message: string): Transition => ({ allowed: false, from, refusal, message });

/** The status `action` leads to from `current`, or why it is refused (REF-002 §8.2; see the module comment). */
export function nextStatusFor(action: StatusAction, current: number): Transition {
  const cls = statusClass(current);
  switch (action.type) {
    case "disable":
      if (action.actor === "user") return allow(current, SubscriptionStatus.UNSUBSCRIBED, "unsubscribed");
      // -31 is undoable through the API; writing it over a user's opt-out would let the API undo that opt-out.
      if (cls === "unsubscribed" || cls === "needs_user_consent") return allow(current, current, "disabled");
      return allow(current, SubscriptionStatus.DISABLED_BY_API, "disabled");

    case "enable":
      if (cls === "subscribed") return allow(current, current, "enabled");
      if (cls === "disabled_by_api") return allow(current, SubscriptionStatus.SUBSCRIBED, "enabled");
      if (cls === "delivery_error") {
        return refuse(current, "token_update_required", `status ${current} (${statusName(current)}) is a delivery error; update the token to resolve it`);
      }
      // unsubscribed, never subscribed, pending double opt-in, or a recorded refusal: the user's consent is required.
      if (action.actor === "user") return allow(current, SubscriptionStatus.SUBSCRIBED, "enabled");
      return refuse(current, "user_consent_required", `status ${current} (${statusName(current)}) can only be re-enabled by the user (send reason "user" from the SDK)`);

    case "token_updated":
      return allow(current, cls === "delivery_error" ? SubscriptionStatus.SUBSCRIBED : current, "token_updated");

    case "delivery_failed":
      if (cls === "unsubscribed" || cls === "disabled_by_api" || cls === "needs_user_consent") return allow(current, current, "delivery_failed");
      return allow(current, action.status, "delivery_failed");
  }
}

/** Whether `action` is allowed from `current` (it may still leave the status unchanged). */
export function canTransition(action: StatusAction, current: number): boolean {
  return nextStatusFor(action, current).allowed;
}
