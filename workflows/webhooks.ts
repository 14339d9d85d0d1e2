/**
 * A session's webhooks, on the workflow side: each event that needs someone (waiting, out of budget)
 * or ends the session starts one delivery activity, in the background, and its outcome is recorded as
 * `webhook.delivered` or `webhook.failed`. The session never waits for a receiver, except at its end
 * (and before continuing as new), where deliveries still under way are awaited so none is abandoned.
 */
import { ActivityFailure, ApplicationFailure, CancellationScope, patched, proxyActivities } from '@temporalio/workflow';
import type { WebhookActivities } from '../common/activities';
import type { SessionEvent } from '../common/events';
import { webhookEventFor, type WebhookSpec } from '../common/webhooks';
import type { Emit } from './sandbox-lifecycle';

/** Marks runs that deliver webhooks (sessions whose spec or tenant names one). */
export const PATCH_WEBHOOKS = 'keel-webhooks';

// About 8 minutes of retries with backoff (1, 2, 4 … 60 s), then the delivery is recorded as failed.
const { deliverWebhook } = proxyActivities<WebhookActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 12 },
});

export class SessionWebhooks {
  private readonly inFlight = new Set<Promise<void>>();
  /** The tenant's URL, known once the session is admitted. */
  tenantUrl: string | undefined;

  constructor(
    private readonly sessionId: string,
    private readonly spec: WebhookSpec | undefined,
    private readonly emit: Emit,
  ) {}

  /** Look at an emitted event; start a delivery when it is one the webhook wants. */
  observe(event: SessionEvent): void {
    const url = this.spec?.url ?? this.tenantUrl;
    const kind = webhookEventFor(event);
    if (!url || !kind) return;
    if (this.spec?.events && !this.spec.events.includes(kind)) return;
    if (!patched(PATCH_WEBHOOKS)) return;
    const id = `${this.sessionId}/${event.seq}`;
    // Not cancelled with the session: "it was cancelled" is news a receiver wants too.
    const delivery = CancellationScope.nonCancellable(() => deliverWebhook({ url, id, event: kind, sessionId: this.sessionId, data: event.data })).then(
      (r) => this.emit('webhook.delivered', { id, event: kind, url, status: r.status, attempt: r.attempt }),
      (err: unknown) => this.emit('webhook.failed', { id, event: kind, url, error: reason(err) }),
    );
    this.inFlight.add(delivery);
    void delivery.finally(() => this.inFlight.delete(delivery));
  }

  /** Wait for every delivery under way (their outcomes are emitted by then). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }
}

function reason(err: unknown): string {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure) return `${cause.type}: ${cause.message}`;
  return cause instanceof Error ? cause.message : String(cause);
}
