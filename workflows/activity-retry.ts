import type { RetryPolicy } from "@temporalio/common";

/**
 * How every workflow retries its activities: infrastructure failures (PostgreSQL down, a worker
 * lost) are retried until they clear, backing off to once a minute. Provider outcomes are values,
 * not exceptions; their retries are the workflows' own durable timers.
 */
export const ACTIVITY_RETRY: RetryPolicy = { initialInterval: "1 second", backoffCoefficient: 2, maximumInterval: "1 minute" };
