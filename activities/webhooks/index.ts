/** Webhook deliveries for session workers (common/webhooks.ts has the format). */
export { createWebhookActivities, webhookSignature, type WebhookActivityDeps } from './activities';
