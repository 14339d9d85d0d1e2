/**
 * A session's tool steps as people read them: each call paired with its result.
 * Pure: built from the event log (`store/queries.ts`), shown by the CLI and the API.
 */
import type { EventData, EventRow } from '../common/events';
import { describeCall } from '../common/tools';

/** One tool step, as `--json` and the progress lines show it. */
export interface StepSummary {
  seq: number;
  step: number;
  tool: string;
  args: string;
  ok: boolean;
  exitCode?: number;
  error?: string;
  durationMs?: number;
}

/** The steps of a session: one per `tool.result`, with the arguments of its `tool.call`. */
export function stepsOf(events: readonly EventRow[]): StepSummary[] {
  const calls = new Map<string, EventData<'tool.call'>>();
  const steps: StepSummary[] = [];
  for (const e of events) {
    if (e.type === 'tool.call') calls.set(e.data.callId, e.data);
    if (e.type === 'tool.result') {
      const r = e.data;
      steps.push({
        seq: e.seq,
        step: r.step,
        tool: r.name,
        args: describeCall(r.name, calls.get(r.callId)?.input),
        ok: r.ok,
        ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
        ...(r.error !== undefined ? { error: r.error } : {}),
        ...(r.durationMs !== undefined ? { durationMs: r.durationMs } : {}),
      });
    }
  }
  return steps;
}
