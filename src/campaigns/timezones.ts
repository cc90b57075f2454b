/**
 * Timezone delivery rules (`delivery: {mode: "timezone", local_time}`): which instant each
 * recipient's local time falls on, and how recipients group by that instant. Pure; luxon does the
 * IANA zone arithmetic (DST gaps and overlaps included).
 */
import { DateTime } from "luxon";
import { isIanaTimeZone } from "../time-zones";

/** "HH:MM" or "HH:MM:SS", 24-hour clock. */
export const LOCAL_TIME_PATTERN = /^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$/;

/**
 * The first instant at or after `from` at which the wall clock in `zone` reads `localTime`.
 * A time skipped by a DST jump moves forward by the jump (02:30 on a spring-forward night reads
 * 03:30; luxon's rule); an hour repeated by a fall-back resolves to its first occurrence, also when
 * `from` falls between the two (then the next day's): one instant per local date, so consecutive
 * recurring runs never send a zone that date's 01:30 twice, once at each occurrence.
 */
export function nextLocalTime(from: Date, zone: string, localTime: string): Date {
  const match = LOCAL_TIME_PATTERN.exec(localTime);
  if (!match) throw new Error(`invalid local time ${localTime}`);
  const [hour, minute, second] = [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)];
  const start = DateTime.fromJSDate(from, { zone });
  let candidate = start.set({ hour, minute, second, millisecond: 0 });
  // The next calendar day from its start: `from`'s time of day may not exist on that day (a DST
  // jump across midnight), and luxon would move it into the day after.
  if (candidate.toMillis() < from.getTime()) candidate = start.startOf("day").plus({ days: 1 }).set({ hour, minute, second, millisecond: 0 });
  return candidate.toJSDate();
}

/**
 * The instant timezone delivery plans from. The campaign's nominal start (a recurring run's fire
 * time, a one-shot's scheduled_at) when it passed at most `graceMs` ago, else `now − graceMs` (a
 * zone whose local time passed within the grace still goes at once), and `now` when the nominal
 * start is still ahead (an execute ahead of schedule). Not simply `now`: the workflow plans a
 * moment after the fire, and planning from that moment moved every zone whose local time equals the
 * fire time to the next day (with overlap skip, a daily run then ate the next fire).
 */
export function deliveryPlanningStart(nominal: Date | null, now: Date, graceMs: number): Date {
  if (nominal === null) return now;
  return new Date(Math.max(Math.min(nominal.getTime(), now.getTime()), now.getTime() - graceMs));
}

/** True when two instants read the same wall-clock date and time in `zone` (a DST fall-back repeats an hour). */
export function sameLocalWallTime(a: Date, b: Date, zone: string): boolean {
  const format = "yyyy-MM-dd'T'HH:mm:ss.SSS";
  return DateTime.fromJSDate(a, { zone }).toFormat(format) === DateTime.fromJSDate(b, { zone }).toFormat(format);
}

/** Recipients whose local time falls on the same instant. */
export interface DeliveryGroup {
  /** Epoch ms to send at. */
  sendAt: number;
  /** The subscriptions.timezone values of this group, as stored (invalid ones included). */
  timezones: string[];
  /** Subscriptions without a timezone belong here (the fallback timezone's group). */
  includesUnset: boolean;
}

/**
 * Groups the audience's distinct timezone values by send instant, earliest first. Values that are
 * not valid zones are sent with the fallback, like subscriptions that have none. With `until` (a
 * recurring run: its schedule's next fire), groups whose instant comes at or after it are left out:
 * the next run plans them from that fire. Across a DST change a zone's instant can fall a day past
 * the run's fire; sent by this run, it held the run open at the next fire, which overlap SKIP then
 * dropped for every zone.
 */
export function deliveryGroups(zones: ReadonlyArray<string | null>, fallbackZone: string, localTime: string, from: Date, until?: Date): DeliveryGroup[] {
  const groups = new Map<number, DeliveryGroup>();
  const groupFor = (zone: string): DeliveryGroup => {
    const sendAt = nextLocalTime(from, zone, localTime).getTime();
    let group = groups.get(sendAt);
    if (!group) groups.set(sendAt, (group = { sendAt, timezones: [], includesUnset: false }));
    return group;
  };
  const fallback = groupFor(fallbackZone);
  let fallbackUsed = false;
  for (const zone of zones) {
    if (zone === null) {
      fallback.includesUnset = true;
      fallbackUsed = true;
    } else if (isIanaTimeZone(zone)) {
      groupFor(zone).timezones.push(zone);
    } else {
      fallback.timezones.push(zone);
      fallbackUsed = true;
    }
  }
  // The fallback group exists only if someone is in it (or shares its instant with a real zone).
  if (!fallbackUsed && fallback.timezones.length === 0) groups.delete(fallback.sendAt);
  return [...groups.values()].filter((group) => until === undefined || group.sendAt < until.getTime()).sort((a, b) => a.sendAt - b.sendAt);
}
