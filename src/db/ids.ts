import { v7 as uuidv7 } from "uuid";

/** A new time-ordered UUID (v7): index-friendly primary keys that sort by creation time. */
export function newId(): string {
  return uuidv7();
}
