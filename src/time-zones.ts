/**
 * The one rule for what is a time zone, for every place that takes or reads one (subscriptions,
 * applications, quotas, campaign schedules and timezone delivery): each had its own check, and
 * an ICU that took offsets could have let an application keep a zone its subscriptions refused.
 */
import { z } from "zod";

// An offset like "+09:00" is accepted by some ICU versions; only IANA names are allowed.
const IANA_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/;

// Names already found valid: building an Intl formatter costs tens of µs, and quota periods and
// delivery groups ask per batch. Only valid names are kept, so the set stays as small as the tz
// database, whatever requests send.
const known = new Set<string>();

/** True for an IANA time zone name this runtime knows ("Asia/Seoul", "UTC"); never an offset. */
export function isIanaTimeZone(zone: string): boolean {
  if (known.has(zone)) return true;
  if (!IANA_NAME.test(zone)) return false;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: zone });
  } catch (error) {
    // Intl throws RangeError for an unknown zone; anything else is a real fault.
    if (error instanceof RangeError) return false;
    throw error;
  }
  known.add(zone);
  return true;
}

/** An IANA time zone name such as `Asia/Seoul` in a request body or query. */
export const TimeZoneName = z.string().trim().min(1).max(64).refine(isIanaTimeZone, "must be an IANA timezone like Asia/Seoul");
