/** Following a session's event log as it is written, from any machine that reaches Postgres. */
import type { ModelDelta } from '../common/deltas';
import type { EventRow } from '../common/events';
import { EventHub, type Sql, type Subscription } from '../store';

/**
 * Call `onEvent` for each event as it is recorded (LISTEN/NOTIFY, store/subscribe.ts), until
 * `session.ended`, or until `stop` resolves and every event recorded by then has been handed over.
 * `afterSeq` skips the events up to it. `onDelta` hears running model calls' text as it is
 * generated (ephemeral; see store/subscribe.ts).
 */
export async function follow(
  sql: Sql,
  sessionId: string,
  onEvent: (e: EventRow) => void,
  opts: { stop?: Promise<unknown>; afterSeq?: number; onDelta?: (d: ModelDelta) => void } = {},
): Promise<void> {
  const hub = new EventHub(sql);
  let sub: Subscription | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      hub
        .subscribe(sessionId, {
          afterSeq: opts.afterSeq ?? 0,
          onEvent: (e) => {
            onEvent(e);
            if (e.type === 'session.ended') resolve();
          },
          ...(opts.onDelta ? { onDelta: opts.onDelta } : {}),
          onError: reject,
        })
        .then((s) => {
          sub = s;
          // The caller awaits `stop` itself; here it only ends the following, whatever its outcome.
          const settle = () => s.flush().then(resolve, reject);
          opts.stop?.then(settle, settle);
        }, reject);
    });
  } finally {
    sub?.close();
    await hub.close();
  }
}
