/**
 * Webhooks: a URL that gets a signed POST when a session needs someone (it waits for an approval or a
 * message, or ran out of budget) or ends. Named by the session's spec (`webhook`) or by its tenant
 * (`keel tenant set <t> --webhook <url>`); the spec's wins. Pure code: the workflow and the client use it.
 *
 * Each POST carries the JSON body `{ id, event, sessionId, data }` and three headers:
 * - `Keel-Event`: the event;
 * - `Keel-Delivery`: the delivery id (the session id and the triggering event's seq), the same on every
 *   retry, so a receiver can drop a repeat;
 * - `Keel-Signature: t=<unix seconds>,v1=<hex>`: HMAC-SHA256 with the workers' `KEEL_WEBHOOK_SECRET` over
 *   `<t>.<body>`. A receiver recomputes it, compares in constant time and refuses an old `t`.
 */
import type { SessionEvent } from './events';

export const WEBHOOK_EVENTS = ['session.waiting', 'session.budget_exhausted', 'session.ended'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** A session's webhook. */
export interface WebhookSpec {
  /** An `http:` or `https:` URL, reached from the session workers. */
  url: string;
  /** Which events to send. @default all of {@link WEBHOOK_EVENTS} */
  events?: WebhookEvent[];
}

/** What the delivery activity sends. */
export interface WebhookDelivery {
  url: string;
  id: string;
  event: WebhookEvent;
  sessionId: string;
  data: unknown;
}

/** What a delivery came to: the receiver's status, on which attempt. */
export interface WebhookReceipt {
  status: number;
  attempt: number;
}

/** Problems with a webhook spec, each naming its field. */
export function webhookProblems(w: unknown, field = 'webhook'): string[] {
  if (typeof w !== 'object' || w === null || Array.isArray(w)) return [`${field} must be an object like {"url": "https://…"}`];
  const { url, events } = w as Record<string, unknown>;
  const problems: string[] = [];
  problems.push(...webhookUrlProblems(url, `${field}.url`));
  if (events !== undefined) {
    if (!Array.isArray(events) || events.length === 0) problems.push(`${field}.events must be a non-empty list of ${WEBHOOK_EVENTS.join(', ')}`);
    else for (const e of events) if (!WEBHOOK_EVENTS.includes(e as WebhookEvent)) problems.push(`${field}.events: ${JSON.stringify(e)} is not one of ${WEBHOOK_EVENTS.join(', ')}`);
  }
  for (const key of Object.keys(w)) if (key !== 'url' && key !== 'events') problems.push(`${field}.${key} is not a webhook field (url, events)`);
  return problems;
}

/** Problems with a webhook URL: it must be absolute http(s), without credentials in it. */
export function webhookUrlProblems(url: unknown, field = 'webhook.url'): string[] {
  if (typeof url !== 'string' || url.length === 0) return [`${field} must be a URL`];
  if (url.length > 2048) return [`${field} is longer than 2048 characters`];
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return [`${field} is not a URL: ${JSON.stringify(url.slice(0, 100))}`];
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return [`${field} must be http or https, not ${parsed.protocol.replace(':', '')}`];
  if (parsed.username || parsed.password) return [`${field} must not hold credentials (the body is signed with KEEL_WEBHOOK_SECRET instead)`];
  return [];
}

/** The webhook event an emitted session event triggers, if any. */
export function webhookEventFor(event: SessionEvent): WebhookEvent | undefined {
  if (event.type === 'session.ended') return 'session.ended';
  if (event.type !== 'session.status') return undefined;
  const { status } = event.data;
  if (status === 'waiting') return 'session.waiting';
  if (status === 'budget_exhausted') return 'session.budget_exhausted';
  return undefined;
}
