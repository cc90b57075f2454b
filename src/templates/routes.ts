import type { RouteSpec } from "../http/route";

/** Routes of the templates domain (REF-001). */
export const templateRoutes: RouteSpec[] = [];
