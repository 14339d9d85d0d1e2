/**
 * Webhook deliveries: one signed POST per call (common/webhooks.ts has the format). The workflow's
 * retry policy gives the backoff; this decides what is worth a retry. Runs on the session workers.
 */
import { createHmac } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { WebhookActivities } from '../../common/activities';
import { failure, WebhookFailure } from '../../common/failures';
import type { WebhookDelivery, WebhookReceipt } from '../../common/webhooks';

export interface WebhookActivityDeps {
  /** `KEEL_WEBHOOK_SECRET`: the HMAC key. Without it nothing is sent (a delivery fails NotConfigured). */
  secret: string | undefined;
  /** How long one POST may take. @default 10 s */
  timeoutMs?: number;
}

/** `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. */
export function webhookSignature(secret: string, body: string, unixSec: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSec}.${body}`).digest('hex');
  return `t=${unixSec},v1=${mac}`;
}

export function createWebhookActivities({ secret, timeoutMs = 10_000 }: WebhookActivityDeps) {
  return {
    async deliverWebhook(d: WebhookDelivery): Promise<WebhookReceipt> {
      if (!secret) {
        throw failure(WebhookFailure.NotConfigured, 'no KEEL_WEBHOOK_SECRET on the session workers to sign webhooks with. Fix: set it (any long random string the receiver also knows)');
      }
      const body = JSON.stringify({ id: d.id, event: d.event, sessionId: d.sessionId, data: d.data });
      let res: Response;
      try {
        res = await fetch(d.url, {
          method: 'POST',
          redirect: 'manual',
          signal: AbortSignal.timeout(timeoutMs),
          headers: {
            'content-type': 'application/json',
            'user-agent': 'keel-webhooks',
            'keel-event': d.event,
            'keel-delivery': d.id,
            'keel-signature': webhookSignature(secret, body, Math.floor(Date.now() / 1000)),
          },
          body,
        });
      } catch (err) {
        const e = err as Error & { cause?: { code?: string } };
        const why = e.name === 'TimeoutError' ? `no answer in ${timeoutMs / 1000} s` : (e.cause?.code ?? e.message);
        throw failure(WebhookFailure.Unavailable, `webhook ${d.url} unreachable: ${why}`);
      }
      await res.body?.cancel();
      const attempt = Context.current().info.attempt;
      if (res.status >= 200 && res.status < 300) return { status: res.status, attempt };
      const message = `webhook ${d.url} answered ${res.status} on attempt ${attempt}`;
      if (res.status === 408 || res.status === 429 || res.status >= 500) throw failure(WebhookFailure.Unavailable, message);
      // 3xx too: a signed body does not follow a redirect to somewhere else.
      throw failure(WebhookFailure.Rejected, message);
    },
  } satisfies WebhookActivities;
}
