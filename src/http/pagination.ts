import { z } from "zod";
import type { Knex } from "knex";
import { queryInteger } from "./validation";

/** Largest page a list endpoint returns; bigger requests are a validation error, not a silent cap. */
export const MAX_PER_PAGE = 100;

/**
 * `page` / `per_page` query parameters shared by every list endpoint. Strict: an unknown parameter
 * (a filter the list does not have, a typo of `per_page`) is a validation error, not a page that
 * silently ignores it.
 */
export const PaginationQuery = z.strictObject({
  page: queryInteger(1).default(1),
  per_page: queryInteger(1, MAX_PER_PAGE).default(20),
});

/**
 * Refuses a `from`/`to` window that holds no instant (`from` at or after `to`): swapped bounds
 * are a mistake, not a question whose answer is "nothing". For list queries' superRefine.
 */
export function refuseEmptyWindow(query: { from?: string | undefined; to?: string | undefined }, ctx: z.RefinementCtx): void {
  if (query.from && query.to && Date.parse(query.from) >= Date.parse(query.to)) ctx.addIssue({ code: "custom", path: ["from"], message: "must be before `to`" });
}

/** REF-001's `pagination` object. */
export interface Pagination {
  page: number;
  per_page: number;
  total_items: number;
  total_pages: number;
}

/** Schema of the pagination object, for the OpenAPI document. */
export const PaginationSchema = z.object({
  page: z.number().int(),
  per_page: z.number().int(),
  total_items: z.number().int(),
  total_pages: z.number().int(),
});

/**
 * Runs a filtered query for one page plus its total count. The builder must not have ordering or
 * limits applied; `orderBy` is applied to the page query only.
 */
export async function paginate<Row>(
  query: Knex.QueryBuilder,
  page: number,
  perPage: number,
  orderBy: Array<{ column: string; order: "asc" | "desc" }>,
): Promise<{ rows: Row[]; pagination: Pagination }> {
  const [countRow] = await query.clone().clearSelect().clearOrder().count<{ count: string }[]>({ count: "*" });
  const totalItems = Number(countRow?.count ?? 0);
  const rows = (await query
    .clone()
    .orderBy(orderBy)
    .limit(perPage)
    .offset((page - 1) * perPage)) as Row[];
  return {
    rows,
    pagination: { page, per_page: perPage, total_items: totalItems, total_pages: Math.ceil(totalItems / perPage) },
  };
}
