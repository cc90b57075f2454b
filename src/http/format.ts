/** ISO 8601 UTC text for a timestamp column; null stays null (unset timestamps in API answers). */
export function iso(value: Date | string): string;
export function iso(value: Date | string | null | undefined): string | null;
export function iso(value: Date | string | null | undefined): string | null {
  return value ? new Date(value).toISOString() : null;
}

/** `part / whole` as a percentage with 2 decimals (REF-001's rates); 0 when nothing was counted. */
export function percent(part: number, whole: number): number {
  return whole > 0 ? Math.round((part / whole) * 10_000) / 100 : 0;
}
