/**
 * Reading a session back from Postgres: live progress while it runs, and the
 * timeline afterwards. Both read the event log, not Temporal, so they show what
 * was recorded, which is what an auditor sees.
 */
import type { Sql } from 'postgres';
import { getEvents, type EventRow } from '../activities/store';
import { describeCall } from '../common/tools';
import type { SnapshotInfo } from '../common/types';

export type { EventRow };

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

export function stepsOf(events: EventRow[]): StepSummary[] {
  const calls = new Map<string, EventRow>();
  const steps: StepSummary[] = [];
  for (const e of events) {
    if (e.type === 'tool.call') calls.set(String(e.data.callId), e);
    if (e.type === 'tool.result') {
      const call = calls.get(String(e.data.callId));
      steps.push({
        seq: e.seq,
        step: Number(e.data.step),
        tool: String(e.data.name),
        args: describeCall(String(e.data.name), call?.data.input),
        ok: Boolean(e.data.ok),
        exitCode: e.data.exitCode as number | undefined,
        error: e.data.error as string | undefined,
        durationMs: e.data.durationMs as number | undefined,
      });
    }
  }
  return steps;
}

export function formatStep(s: StepSummary): string {
  const outcome = s.exitCode !== undefined ? `exit ${s.exitCode}` : s.ok ? 'ok' : (s.error ?? 'error');
  const took = s.durationMs !== undefined ? `${(s.durationMs / 1000).toFixed(2)}s` : '';
  return `  ${s.ok ? '✓' : '✗'} ${String(s.step).padStart(2)}  ${s.tool.padEnd(10)} ${s.args.padEnd(60)} ${outcome.padEnd(16)} ${took}`;
}

/** One line per event, with the time since the session started. */
export function formatTimeline(events: EventRow[]): string[] {
  const t0 = events[0]?.at.getTime() ?? 0;
  return events.map((e) => {
    const offset = `+${((e.at.getTime() - t0) / 1000).toFixed(2)}s`.padStart(9);
    return `${String(e.seq).padStart(4)} ${offset}  ${e.type.padEnd(19)} ${detail(e)}`;
  });
}

function detail(e: EventRow): string {
  const d = e.data;
  switch (e.type) {
    case 'session.started':
      return `${d.model} task: ${oneLine(String(d.task), 70)}`;
    case 'sandbox.provisioned':
      return `container ${String(d.containerId).slice(0, 12)} on ${d.hostId} (${d.image})`;
    case 'model.call': {
      const u = d.usage as { inputTokens?: number; outputTokens?: number } | undefined;
      const calls = (d.toolCalls as Array<{ name: string }> | undefined)?.map((c) => c.name).join(', ') || 'no tools';
      return `step ${d.step}: ${calls}; ${u?.inputTokens ?? 0} in / ${u?.outputTokens ?? 0} out tokens`;
    }
    case 'tool.call':
      return `${d.name} ${describeCall(String(d.name), d.input)}`;
    case 'tool.result': {
      const outcome = `${d.name} ${d.ok ? 'ok' : `failed (${d.error ?? `exit ${d.exitCode}`})`}${d.durationMs !== undefined ? ` in ${d.durationMs} ms` : ''}`;
      const snap = d.snapshot as SnapshotInfo | undefined;
      return snap
        ? `${outcome}; snapshot ${snap.id.slice(0, 12)} (+${snap.added} ~${snap.modified} -${snap.removed}, ${bytes(snap.uploadedBytes)} new)`
        : outcome;
    }
    case 'sandbox.restored':
      return `generation ${d.generation} on ${d.hostId} from snapshot ${String(d.snapshot ?? 'none').slice(0, 12)}: ${d.reason}`;
    case 'sandbox.snapshot': {
      const snap = d as unknown as SnapshotInfo;
      return `snapshot ${snap.id.slice(0, 12)} (+${snap.added} ~${snap.modified} -${snap.removed}, ${bytes(snap.uploadedBytes)} new) before ${d.reason}`;
    }
    case 'sandbox.suspended':
      return `container ${String(d.containerId).slice(0, 12)} released (${d.reason})`;
    case 'sandbox.resumed':
      return `generation ${d.generation} on ${d.hostId} from snapshot ${String(d.snapshot ?? 'none').slice(0, 12)}`;
    case 'message.user':
      return oneLine(String(d.text), 80);
    case 'session.status':
      return `${d.status}${d.reason ? `: ${d.reason}` : ''}`;
    case 'session.error':
      return oneLine(String(d.message), 100);
    case 'session.ended':
      return `${d.status} after ${d.steps} steps, ${d.toolCalls} tool calls${d.reason ? ` (${d.reason})` : ''}`;
    case 'sandbox.removed':
      return `container ${String(d.containerId).slice(0, 12)} removed`;
    default:
      return oneLine(JSON.stringify(d), 100);
  }
}

function bytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function oneLine(text: string, max: number): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 3)}...` : t;
}

/**
 * Print each event as it is recorded until the session ends (or `stop` resolves).
 * Polls the event log; a session can be followed from any machine that reaches Postgres.
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
