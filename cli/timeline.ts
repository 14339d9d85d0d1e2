/**
 * Printing a session from its event log: one line per event, and one line per
 * tool step. What is printed is what was recorded, which is what an auditor sees.
 */
import type { EventRow } from '../common/events';
import { describeCall } from '../common/tools';
import type { SnapshotInfo } from '../common/types';
import type { StepSummary } from '../inspect';

export function formatStep(s: StepSummary): string {
  const outcome = s.exitCode !== undefined ? `exit ${s.exitCode}` : s.ok ? 'ok' : (s.error ?? 'error');
  const took = s.durationMs !== undefined ? `${(s.durationMs / 1000).toFixed(2)}s` : '';
  return `  ${s.ok ? '✓' : '✗'} ${String(s.step).padStart(2)}  ${s.tool.padEnd(10)} ${s.args.padEnd(60)} ${outcome.padEnd(16)} ${took}`;
}

/** One line per event, with the time since the session started. */
export function formatTimeline(events: readonly EventRow[]): string[] {
  const t0 = events[0]?.at.getTime() ?? 0;
  return events.map((e) => {
    const offset = `+${((e.at.getTime() - t0) / 1000).toFixed(2)}s`.padStart(9);
    return `${String(e.seq).padStart(4)} ${offset}  ${e.type.padEnd(19)} ${detail(e)}`;
  });
}

function snapshotLine(snap: SnapshotInfo): string {
  return `snapshot ${snap.id.slice(0, 12)} (+${snap.added} ~${snap.modified} -${snap.removed}, ${bytes(snap.uploadedBytes)} new)`;
}

function detail(e: EventRow): string {
  switch (e.type) {
    case 'session.started':
      return `${e.data.model} task: ${oneLine(e.data.task, 70)}`;
    case 'session.contract': {
      const c = e.data;
      const sb = c.sandbox ? `; sandbox ${c.sandbox.image} (${c.sandbox.imageId.slice(7, 19)}), executor ${c.sandbox.executor}, network ${c.sandbox.network}` : '';
      return `${c.model.provider}:${c.model.model}, ${c.tools.length} tools, worker ${c.workerBuildId ?? 'unknown'}${sb}`;
    }
    case 'session.continued':
      return `workflow run ${e.data.run} (${e.data.workflowRunId}) carries on from step ${e.data.step}`;
    case 'sandbox.provisioned':
      return `container ${e.data.containerId.slice(0, 12)} on ${e.data.hostId} (${e.data.image})`;
    case 'model.call': {
      const { usage, toolCalls, step } = e.data;
      const calls = toolCalls.map((c) => c.name).join(', ') || 'no tools';
      const ctx = e.data.context;
      const window = ctx ? `; context ~${ctx.estimatedTokens}/${ctx.budgetTokens} tokens${ctx.elided ? `, ${ctx.elided} outputs elided` : ''}${ctx.dropped ? `, ${ctx.dropped} turns dropped` : ''}` : '';
      return `step ${step}: ${calls}; ${usage?.inputTokens ?? 0} in / ${usage?.outputTokens ?? 0} out tokens${window}`;
    }
    case 'tool.call':
      return `${e.data.name} ${describeCall(e.data.name, e.data.input)}`;
    case 'tool.result': {
      const d = e.data;
      const outcome = `${d.name} ${d.ok ? 'ok' : `failed (${d.error ?? `exit ${d.exitCode}`})`}${d.durationMs !== undefined ? ` in ${d.durationMs} ms` : ''}${d.injected ? ` [INJECTED ${d.injected} fault]` : ''}`;
      return d.snapshot ? `${outcome}; ${snapshotLine(d.snapshot)}` : outcome;
    }
    case 'sandbox.restored':
      return `generation ${e.data.generation} on ${e.data.hostId} from snapshot ${(e.data.snapshot ?? 'none').slice(0, 12)}: ${e.data.reason}`;
    case 'sandbox.snapshot':
      return e.data.reason === 'seed' ? `seed: ${snapshotLine(e.data)} (/workspace as the session started)` : `${snapshotLine(e.data)} before ${e.data.reason}`;
    case 'sandbox.suspended':
      return `container ${e.data.containerId.slice(0, 12)} released (${e.data.reason})`;
    case 'sandbox.resumed':
      return `generation ${e.data.generation} on ${e.data.hostId} from snapshot ${(e.data.snapshot ?? 'none').slice(0, 12)}`;
    case 'message.user':
      return oneLine(e.data.text, 80);
    case 'network.refused': {
      const d = e.data;
      const where = d.address ? ` (resolves to ${d.address})` : '';
      return `${oneLine(d.host, 80)}:${d.port} ${d.reason}${where}${d.count > 1 ? ` ×${d.count}` : ''} ${d.callId ? `after call ${d.callId}` : 'when the sandbox was released'}${d.dropped ? `; ${d.dropped} more not listed` : ''}`;
    }
    case 'session.status':
      return `${e.data.status}${e.data.reason ? `: ${e.data.reason}` : ''}`;
    case 'session.error':
      return oneLine(e.data.message, 100);
    case 'approval.requested':
      return `${e.data.tool} ${describeCall(e.data.tool, e.data.input)} waits for approval (call ${e.data.callId}${e.data.reason ? `: ${e.data.reason}` : ''})`;
    case 'approval.decided':
      return `${e.data.decision}${e.data.remember ? ' and remember' : ''} call ${e.data.callId} by ${e.data.by} after ${e.data.waitedSec} s${e.data.reason ? `: ${e.data.reason}` : ''}`;
    case 'budget.exhausted':
      return `stopped at the ${e.data.budget} budget: ${e.data.used} of ${e.data.limit}`;
    case 'budget.added':
      return `${Object.entries(e.data.add).map(([k, v]) => `+${v} ${k}`).join(', ')} by ${e.data.by}`;
    case 'budget.warning':
      return oneLine(e.data.message, 100);
    case 'session.admission':
      return `${e.data.outcome} (tenant ${e.data.tenant}: ${e.data.running} of ${e.data.max} running)`;
    case 'session.ended':
      return `${e.data.status} after ${e.data.steps} steps, ${e.data.toolCalls} tool calls${e.data.reason ? ` (${e.data.reason})` : ''}`;
    case 'sandbox.removed':
      return `container ${e.data.containerId.slice(0, 12)} removed`;
    case 'webhook.delivered':
      return `${e.data.event} to ${oneLine(e.data.url, 80)}: ${e.data.status} on attempt ${e.data.attempt}`;
    case 'webhook.failed':
      return `${e.data.event} to ${oneLine(e.data.url, 80)} not delivered: ${oneLine(e.data.error, 100)}`;
    case 'session.archived':
      return `history of ${e.data.runs.length} run${e.data.runs.length === 1 ? '' : 's'} (${e.data.historyEvents} events) archived as ${e.data.ref.sha.slice(0, 12)}`;
  }
}

function bytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KB` : `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function oneLine(text: string, max: number): string {
  const t = String(text).replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 3)}...` : t;
}
