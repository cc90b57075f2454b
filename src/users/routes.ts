import type { RouteSpec } from "../http/route";

/** Routes of the users domain (REF-001). */
export const userRoutes: RouteSpec[] = [];
