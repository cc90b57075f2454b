import type { RouteSpec } from "../http/route";

/** Routes of the subscriptions domain (REF-001). */
export const subscriptionRoutes: RouteSpec[] = [];
