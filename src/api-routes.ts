import type { RouteSpec } from "./http/route";
import { applicationRoutes } from "./applications/routes";
import { subscriptionRoutes } from "./subscriptions/routes";
import { userRoutes } from "./users/routes";
import { templateRoutes } from "./templates/routes";
import { messageRoutes } from "./messages/routes";
import { analyticsRoutes } from "./analytics/routes";
import { campaignRoutes } from "./campaigns/routes";
import { recurringCampaignRoutes } from "./campaigns/recurring-routes";
import { testSendRoutes } from "./campaigns/test-send";

/** Every REST route, in mount order; the OpenAPI document is generated from this same list. */
export const apiRoutes: RouteSpec[] = [...applicationRoutes, ...subscriptionRoutes, ...userRoutes, ...templateRoutes, ...messageRoutes, ...analyticsRoutes, ...campaignRoutes, ...recurringCampaignRoutes, ...testSendRoutes];
