/**
 * The one rule for what is a time zone, for every place that takes or reads one (subscriptions,
 * applications, quotas, campaign schedules and timezone delivery): each had its own check, and
 * an ICU that took offsets could have let an application keep a zone its subscriptions refused.
 */
import { z } from "zod";

// An offset like "+09:00" is accepted by some ICU versions; only IANA names are allowed.
const IANA_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+)*$/;

// Names already found valid: building an Intl formatter costs 0.25 ms, and quota periods ask on
// every accept and debit. Intl takes a name in any letter case, so requests could grow a plain
// set without end: the runtime's own spellings are kept without bound (there are only as many as
// the tz database has), other valid spellings (links such as Asia/Kolkata, values stored in
// another case) up to a bound, past which they are checked each time.
const MAX_OTHER_SPELLINGS = 1_000;
const known = new Set<string>();
const otherSpellings = new Set<string>();

/** The runtime's spelling of a zone name it knows ("asia/seoul" → "Asia/Seoul"), or undefined; never an offset. */
export function runtimeTimeZoneName(zone: string): string | undefined {
  if (!IANA_NAME.test(zone)) return undefined;
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone: zone }).resolvedOptions().timeZone;
  } catch (error) {
    // Intl throws RangeError for an unknown zone; anything else is a real fault.
    if (error instanceof RangeError) return undefined;
    throw error;
  }
}

/** True for an IANA time zone name this runtime knows ("Asia/Seoul", "UTC"); never an offset. */
export function isIanaTimeZone(zone: string): boolean {
  if (known.has(zone) || otherSpellings.has(zone)) return true;
  const resolved = runtimeTimeZoneName(zone);
  if (resolved === undefined) return false;
  if (resolved === zone) known.add(zone);
  else if (otherSpellings.size < MAX_OTHER_SPELLINGS) otherSpellings.add(zone);
  return true;
}

/**
 * An IANA time zone name such as `Asia/Seoul` in a request body or query, stored with the
 * runtime's letter case when the runtime knows it under that name (`asia/seoul` → `Asia/Seoul`),
 * so such a zone is one value in targeting and grouping. Links keep the name given, in the case
 * given (`Asia/Kolkata` stays, though ICU answers `Asia/Calcutta`).
 */
export const TimeZoneName = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .refine(isIanaTimeZone, "must be an IANA timezone like Asia/Seoul")
  .transform((zone) => {
    const resolved = runtimeTimeZoneName(zone);
    return resolved !== undefined && resolved.toLowerCase() === zone.toLowerCase() ? resolved : zone;
  });

/** How many zone names are cached as known (for tests of the bound). */
export function knownTimeZoneCount(): number {
  return known.size + otherSpellings.size;
}
