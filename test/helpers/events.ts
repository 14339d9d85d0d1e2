/** Waiting on a session's event log, as a person following `keel show` would. */
import type { EventRow } from '../../common/events';
import { getEvents, type Sql } from '../../store';

/**
 * The first event of `sessionId` that matches `pred`, polling Postgres. Fails fast when the
 * session ends without one, and after `timeoutMs`.
 */
export async function waitForEvent<E extends EventRow>(sql: Sql, sessionId: string, pred: (e: EventRow) => e is E, timeoutMs?: number): Promise<E>;
export async function waitForEvent(sql: Sql, sessionId: string, pred: (e: EventRow) => boolean, timeoutMs?: number): Promise<EventRow>;
export async function waitForEvent(sql: Sql, sessionId: string, pred: (e: EventRow) => boolean, timeoutMs = 90_000): Promise<EventRow> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const events = await getEvents(sql, sessionId);
    const hit = events.find(pred);
    if (hit) return hit;
    const ended = events.find((e) => e.type === 'session.ended');
    if (ended) throw new Error(`session ${sessionId} ended before the event came: ${JSON.stringify(ended.data)}`);
    if (Date.now() > deadline) throw new Error(`no matching event in ${sessionId} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
