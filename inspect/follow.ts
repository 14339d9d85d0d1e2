/** Following a session's event log as it is written, from any machine that reaches Postgres. */
import type { EventRow } from '../common/events';
import { getEvents, type Sql } from '../store';

/**
 * Call `onEvent` for each event as it is recorded, until `session.ended` (or `stop` resolves
 * and nothing more is pending). Polls every `intervalMs`.
 */
export async function follow(
  sql: Sql,
  sessionId: string,
  onEvent: (e: EventRow) => void,
  opts: { intervalMs?: number; stop?: Promise<unknown> } = {},
): Promise<void> {
  let after = 0;
  let stopped = false;
  const stop = () => (stopped = true);
  // The caller awaits `stop` itself; here it only ends the polling, whatever its outcome.
  opts.stop?.then(stop, stop);
  for (;;) {
    const rows = await getEvents(sql, sessionId, { afterSeq: after });
    for (const e of rows) {
      after = e.seq;
      onEvent(e);
      if (e.type === 'session.ended') return;
    }
    if (stopped && rows.length === 0) return;
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 150));
  }
}
