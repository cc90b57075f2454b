/** ISO 8601 UTC text for a timestamp column; null stays null (unset timestamps in API answers). */
export function iso(value: Date | string): string;
export function iso(value: Date | string | null | undefined): string | null;
export function iso(value: Date | string | null | undefined): string | null {
  return value ? new Date(value).toISOString() : null;
}
