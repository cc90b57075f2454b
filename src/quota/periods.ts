/**
 * Quota allowance periods: the local day and month of an instant in an IANA timezone, and the UTC
 * instants at which they start and end. Pure functions on top of Intl.DateTimeFormat (the ICU time
 * zone data that ships with Node), so DST is handled without a date library.
 */
import { isIanaTimeZone } from "../time-zones";

/** The daily and monthly period an instant falls in, in one timezone. */
export interface PeriodKeys {
  /** The zone the keys were computed in. */
  timezone: string;
  /** Local calendar day, e.g. "2026-11-22". */
  day: string;
  /** Local calendar month, e.g. "2026-11". */
  month: string;
  /** First instant of the local day. */
  dayStart: Date;
  /** First instant of the next local day: when the daily allowance resets. */
  dayResetAt: Date;
  /** First instant of the local month. */
  monthStart: Date;
  /** First instant of the next local month: when the monthly allowance resets. */
  monthResetAt: Date;
}

const DAY_MS = 86_400_000;
const formatters = new Map<string, Intl.DateTimeFormat>();

// Building a DateTimeFormat loads ICU zone data and costs far more than formatting with it.
function formatterFor(timezone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timezone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat("en-US", {
      timeZone: timezone,
      // h23, not hour12: false, which some ICU versions render as "24" at midnight.
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(timezone, formatter);
  }
  return formatter;
}

interface LocalDate {
  year: number;
  month: number;
  day: number;
}

/** Local wall-clock fields of an instant; `wall` is that wall time read as if it were UTC (ms). */
function localTime(instant: number, timezone: string): LocalDate & { wall: number } {
  const fields: Record<string, number> = {};
  for (const part of formatterFor(timezone).formatToParts(new Date(instant))) {
    if (part.type !== "literal") fields[part.type] = Number(part.value);
  }
  const { year = NaN, month = NaN, day = NaN, hour = NaN, minute = NaN, second = NaN } = fields;
  const millis = ((instant % 1000) + 1000) % 1000;
  return { year, month, day, wall: Date.UTC(year, month - 1, day, hour, minute, second, millis) };
}


/** The first candidate that is a valid IANA zone, else "UTC" (quota zone, then application zone). */
export function resolveTimeZone(...candidates: Array<string | null | undefined>): string {
  for (const candidate of candidates) {
    if (candidate && isIanaTimeZone(candidate)) return candidate;
  }
  return "UTC";
}

/**
 * The first instant whose local date in `timezone` is on or after year-month-day (month and day may
 * overflow, e.g. month 13 is January of the next year). Usually local midnight; where midnight is
 * skipped by a DST jump (America/Santiago, America/Havana, Asia/Beirut) the day starts at the jump.
 * Assumes at most one offset change within a day of midnight, which holds for every IANA zone.
 */
export function startOfLocalDay(year: number, month: number, day: number, timezone: string): Date {
  const midnight = Date.UTC(year, month - 1, day);
  // Every debit asks for the same few boundaries; computing one costs several ICU calls.
  const cacheKey = `${timezone}|${midnight}`;
  const cached = dayStarts.get(cacheKey);
  if (cached !== undefined) return new Date(cached);
  const start = computeStartOfLocalDay(midnight, timezone);
  if (dayStarts.size >= DAY_START_CACHE_SIZE) dayStarts.clear();
  dayStarts.set(cacheKey, start);
  return new Date(start);
}

const DAY_START_CACHE_SIZE = 10_000;
const dayStarts = new Map<string, number>();

function computeStartOfLocalDay(midnight: number, timezone: string): number {
  const offsetBefore = localTime(midnight - DAY_MS, timezone).wall - (midnight - DAY_MS);
  const offsetAfter = localTime(midnight + DAY_MS, timezone).wall - (midnight + DAY_MS);
  const early = midnight - Math.max(offsetBefore, offsetAfter);
  const late = midnight - Math.min(offsetBefore, offsetAfter);
  // When midnight exists it maps to one of these; if it occurs twice (clocks set back onto it), the
  // earlier occurrence starts the day.
  for (const candidate of [early, late]) {
    if (localTime(candidate, timezone).wall === midnight) return candidate;
  }
  // Midnight falls in a DST gap: `early` reads before midnight and `late` after it, so search for
  // the transition (whole seconds in the zone data, ~23 steps at millisecond precision).
  let [lo, hi] = [early, late];
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (localTime(mid, timezone).wall >= midnight) hi = mid;
    else lo = mid;
  }
  return hi;
}

const pad = (value: number, width = 2): string => String(value).padStart(width, "0");

/**
 * The daily and monthly allowance periods `now` falls in, in `timezone`, with their start and reset
 * instants (the next local day / first of the next local month, as UTC instants).
 */
export function periodKeys(now: Date, timezone: string): PeriodKeys {
  const instant = now.getTime();
  if (!Number.isFinite(instant)) throw new RangeError("periodKeys needs a valid date");
  const { year, month, day } = localTime(instant, timezone);
  return {
    timezone,
    day: `${pad(year, 4)}-${pad(month)}-${pad(day)}`,
    month: `${pad(year, 4)}-${pad(month)}`,
    dayStart: startOfLocalDay(year, month, day, timezone),
    dayResetAt: startOfLocalDay(year, month, day + 1, timezone),
    monthStart: startOfLocalDay(year, month, 1, timezone),
    monthResetAt: startOfLocalDay(year, month + 1, 1, timezone),
  };
}
