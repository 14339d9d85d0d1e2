/**
 * The session index never lies: a workflow that Temporal ended outside Keel's
 * own code (terminated by an operator, timed out, failed by the server, deleted)
 * cannot write its own `session.ended`, so Postgres would say `running` forever.
 * Reconciling compares the index with Temporal and, for such a session, writes
 * the `session.ended` the workflow could not, with the real reason, marked
 * `source: 'reconciler'` (it is not anchored in the workflow's history).
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import type { EventRow } from '../common/events';
import type { SessionResult, SessionStatus } from '../common/types';
import { appendEvents, getEvents, getSession, type SessionRow, type Sql } from '../store';

/** Statuses a session can still leave. */
const LIVE: ReadonlySet<string> = new Set(['running', 'waiting', 'budget_exhausted']);

/** Why Temporal says the latest run ended, as Keel reports it; undefined when it is still running. */
async function temporalEnding(client: Client, sessionId: string): Promise<{ status: SessionStatus; reason: string } | undefined> {
  let description;
  try {
    description = await client.workflow.getHandle(sessionId).describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return { status: 'failed', reason: 'the workflow no longer exists in Temporal (deleted, or past the retention period)' };
    throw err;
  }
  const name = description.status.name;
  if (name === 'RUNNING') return undefined;
  const last = await lastEvent(client, sessionId, description.runId);
  switch (name) {
    case 'TERMINATED': {
      const t = last?.workflowExecutionTerminatedEventAttributes;
      return { status: 'terminated', reason: `terminated in Temporal${t?.identity ? ` by ${t.identity}` : ''}${t?.reason ? `: ${t.reason}` : ''}` };
    }
    case 'TIMED_OUT':
      return { status: 'timed_out', reason: 'the workflow timed out in Temporal (execution or run timeout)' };
    case 'FAILED':
      return { status: 'failed', reason: `the workflow failed in Temporal: ${last?.workflowExecutionFailedEventAttributes?.failure?.message ?? 'no message'}` };
    case 'CANCELLED':
      return { status: 'cancelled', reason: 'the workflow was cancelled in Temporal' };
    default:
      // COMPLETED (the workflow's own last event write was lost) or an unexpected state.
      return { status: 'failed', reason: `the workflow is ${name.toLowerCase()} in Temporal but recorded no end` };
  }
}

/** The last event of a run's history, read backwards (one page, one event). */
async function lastEvent(client: Client, sessionId: string, runId: string) {
  const page = await client.workflowService.getWorkflowExecutionHistoryReverse({
    namespace: client.options.namespace,
    execution: { workflowId: sessionId, runId },
    maximumPageSize: 1,
  });
  return page.history?.events?.[0];
}

/** What the event log says the session did, for the result the reconciler records. */
function totals(events: readonly EventRow[]): Pick<SessionResult, 'steps' | 'toolCalls' | 'usage'> {
  let steps = 0;
  let toolCalls = 0;
  const usage = { inputTokens: 0, outputTokens: 0 };
  for (const e of events) {
    if (e.type === 'model.call') {
      steps = Math.max(steps, e.data.step);
      usage.inputTokens += e.data.usage?.inputTokens ?? 0;
      usage.outputTokens += e.data.usage?.outputTokens ?? 0;
    }
    if (e.type === 'tool.call') toolCalls++;
  }
  return { steps, toolCalls, usage };
}

/**
 * Bring one session's index row in line with Temporal. Returns the row as it now is
 * (undefined when the index has no such session).
 */
export async function reconcileSession(sql: Sql, client: Client, sessionId: string): Promise<SessionRow | undefined> {
  const row = await getSession(sql, sessionId);
  if (!row || !LIVE.has(row.status)) return row;
  const ending = await temporalEnding(client, sessionId);
  if (!ending) return row;
  const events = await getEvents(sql, sessionId);
  if (events.some((e) => e.type === 'session.ended')) return getSession(sql, sessionId);
  const seq = (events.at(-1)?.seq ?? 0) + 1;
  const result: SessionResult = { sessionId, status: ending.status, ...totals(events), error: ending.reason };
  // The workflow is closed, so nothing else writes this seq; a concurrent reconciler writes the same.
  await appendEvents(sql, sessionId, [{ seq, type: 'session.ended', data: { ...result, reason: ending.reason, source: 'reconciler' } }]);
  return getSession(sql, sessionId);
}

/** Reconcile every session the index calls live and has not heard from for `quietSec`. Returns the ids it ended. */
export async function reconcileLive(sql: Sql, client: Client, opts: { quietSec?: number; limit?: number } = {}): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`
    select id from sessions
    where status in ('running', 'waiting', 'budget_exhausted') and coalesce(updated_at, created_at) < now() - make_interval(secs => ${opts.quietSec ?? 30})
    order by created_at limit ${opts.limit ?? 200}`;
  const ended: string[] = [];
  for (const { id } of rows) {
    const after = await reconcileSession(sql, client, id);
    if (after && !LIVE.has(after.status)) ended.push(id);
  }
  return ended;
}
