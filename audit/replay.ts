/**
 * Deterministic replay as a deploy gate: a session's whole history, every run,
 * replayed against today's workflow code. A change to `workflows/` that would
 * make a running (or recorded) session take a different path fails here, before
 * it reaches a worker, with the first command that differs.
 */
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import type { History } from './history';

export interface ReplayOutcome {
  sessionId: string;
  runs: number;
  ok: boolean;
  /** The run and the readable reason of the first failure. */
  failure?: { runId: string; message: string };
}

let bundled: Promise<{ code: string }> | undefined;
const noop = (): void => undefined;

/** Today's workflow code, bundled once per process. */
export function currentWorkflows(): Promise<{ code: string }> {
  bundled ??= bundleWorkflowCode({
    workflowsPath: require.resolve('../workflows'),
    logger: { trace: noop, debug: noop, info: noop, warn: noop, error: noop, log: noop },
  });
  return bundled;
}

/** Replay every run of a session against `workflowBundle` (default: today's code). */
export async function replaySession(
  sessionId: string,
  runs: Array<{ runId: string; history: History }>,
  workflowBundle?: { code: string },
): Promise<ReplayOutcome> {
  const code = workflowBundle ?? (await currentWorkflows());
  const histories = runs.map((r) => ({ workflowId: sessionId, history: r.history as Parameters<typeof Worker.runReplayHistory>[1] }));
  for await (const result of Worker.runReplayHistories({ workflowBundle: code }, histories)) {
    if (result.error) {
      return { sessionId, runs: runs.length, ok: false, failure: { runId: result.runId, message: explain(result.error) } };
    }
  }
  return { sessionId, runs: runs.length, ok: true };
}

/** A determinism violation in words a person deploying a change can act on. */
function explain(err: Error): string {
  // The SDK wraps core's message in a Rust debug dump; the sentence that matters is inside it.
  const inner = /Nondeterminism error: ([^"]+)"/.exec(err.message)?.[1] ?? err.message.replace(/^\[TMPRL\d+\]\s*/, '');
  if (/Nondeterminism|DeterminismViolation/i.test(err.name + err.message)) {
    return `today's workflow code takes a different path than the recorded session: ${inner}. Guard the change with patched() so sessions recorded before it keep their path.`;
  }
  return inner;
}
