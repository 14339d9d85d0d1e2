/**
 * Planning a fork: where another session stood at one of its steps (the last event
 * of its transcript up to that step, and the snapshot of its files then).
 */
import { SessionError } from '../common/errors';
import type { EventRow } from '../common/events';
import type { ForkSpec, ModelSpec, SessionSpec } from '../common/types';

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

/**
 * The spec of a fork of `from` after step `atStep`: the original's spec with its transcript and
 * files up to there, `message` as a new instruction, and `model` instead of the original's (a
 * replacement model starts from its own first turn). Throws SessionError when it cannot be made.
 */
export function forkSpec(from: string, events: readonly EventRow[], opts: { atStep: number; message?: string; model?: ModelSpec }): SessionSpec {
  const started = events.find((e) => e.type === 'session.started');
  if (!started || started.type !== 'session.started') throw new SessionError(`no session ${from} in the event log`, 'not_found');
  let fork: ForkSpec;
  try {
    fork = planFork(from, events, opts.atStep);
  } catch (err) {
    throw new SessionError((err as Error).message);
  }
  const original = started.data.spec;
  if (!original && !opts.model) throw new SessionError(`session ${from} recorded no spec (it predates forks): give a model`);
  // The fork's files are the original's at the fork point (its seed included): no seed of its own.
  const { keepAlive: _keepAlive, workspace: _workspace, ...base } = original ?? { task: started.data.task };
  return {
    ...base,
    model: opts.model ?? (original as SessionSpec).model,
    fork: { ...fork, ...(opts.model ? { modelTurnOffset: fork.atStep } : {}) },
    ...(opts.message ? { messages: [opts.message] } : {}),
  };
}
