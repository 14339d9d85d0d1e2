/**
 * Planning a fork: where another session stood at one of its steps (the last event
 * of its transcript up to that step, and the snapshot of its files then).
 */
import type { EventRow } from '../common/events';
import type { ForkSpec } from '../common/types';

/** The fork point of `events` after step `atStep`; throws when the session has no such step. */
export function planFork(sessionId: string, events: readonly EventRow[], atStep: number): ForkSpec {
  const steps = events.reduce((n, e) => (e.type === 'model.call' ? Math.max(n, e.data.step) : n), 0);
  if (!Number.isInteger(atStep) || atStep < 1 || atStep > steps) throw new Error(`session ${sessionId} has ${steps} steps; --at takes 1 to ${steps}`);
  let throughSeq = 0;
  for (const e of events) {
    if ((e.type === 'model.call' || e.type === 'tool.call' || e.type === 'tool.result') && e.data.step <= atStep) throughSeq = Math.max(throughSeq, e.seq);
  }
  let snapshot: string | undefined;
  for (const e of events) {
    if (e.seq > throughSeq) break;
    if (e.type === 'tool.result' && e.data.snapshot) snapshot = e.data.snapshot.id;
    if (e.type === 'sandbox.snapshot') snapshot = e.data.id;
  }
  return { from: sessionId, atStep, throughSeq, ...(snapshot ? { snapshot } : {}) };
}
