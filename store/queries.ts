/**
 * Read-side queries for the CLI, the API and tests. Plain functions, not activities:
 * reads do not belong in workflow history.
 */
import type { EventRow, EventType } from '../common/events';
import type { SessionResult } from '../common/types';
import type { Sql } from './db';

/** One row of `sessions`. */
export interface SessionRow {
  id: string;
  tenant: string;
  task: string;
  model: string;
  status: string;
  createdAt: Date;
  updatedAt: Date | null;
  endedAt: Date | null;
  result: SessionResult | null;
  workflowRunId: string | null;
}

interface RawSession {
  id: string;
  tenant: string;
  task: string;
  model: string;
  status: string;
  created_at: Date;
  updated_at: Date | null;
  ended_at: Date | null;
  result: SessionResult | null;
  workflow_run_id: string | null;
}

function toSession(r: RawSession): SessionRow {
  return {
    id: r.id,
    tenant: r.tenant,
    task: r.task,
    model: r.model,
    status: r.status,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    endedAt: r.ended_at,
    result: r.result,
    workflowRunId: r.workflow_run_id,
  };
}

/** Most recent sessions first; with `tenant`, only that tenant's. @param opts.limit @default 20 */
export async function listSessions(sql: Sql, opts: { limit?: number; tenant?: string } = {}): Promise<SessionRow[]> {
  const rows = await sql<RawSession[]>`
    select * from sessions ${opts.tenant !== undefined ? sql`where tenant = ${opts.tenant}` : sql``}
    order by created_at desc, id limit ${opts.limit ?? 20}`;
  return rows.map(toSession);
}

/** One session, or `undefined` when there is none with that id. */
export async function getSession(sql: Sql, id: string): Promise<SessionRow | undefined> {
  const rows = await sql<RawSession[]>`select * from sessions where id = ${id}`;
  return rows[0] ? toSession(rows[0]) : undefined;
}

type RawEvent = { session_id: string; seq: number; type: EventType; at: Date; data: Record<string, unknown> };

// The log holds what `SessionEvent` describes (appendEvents writes nothing else): the one place rows are typed.
const toEvent = (r: RawEvent): EventRow => ({ sessionId: r.session_id, seq: r.seq, type: r.type, at: r.at, data: r.data }) as EventRow;

/**
 * A session's events in `seq` order; with `afterSeq`, only those after it (for tailing), with
 * `throughSeq` none after that one, with `types` only those types, with `limit` the first that many.
 */
export async function getEvents(
  sql: Sql,
  id: string,
  opts: { afterSeq?: number; throughSeq?: number; types?: readonly EventType[]; limit?: number } = {},
): Promise<EventRow[]> {
  const rows = await sql<RawEvent[]>`
    select session_id, seq, type, at, data from events
    where session_id = ${id} and seq > ${opts.afterSeq ?? -2147483648} and seq <= ${opts.throughSeq ?? 2147483647}
      ${opts.types ? sql`and type in ${sql(opts.types)}` : sql``}
    order by seq ${opts.limit !== undefined ? sql`limit ${opts.limit}` : sql``}`;
  return rows.map(toEvent);
}

/** The first event of a type (e.g. `session.started`), or undefined. */
export async function firstEvent<T extends EventType>(sql: Sql, id: string, type: T): Promise<Extract<EventRow, { type: T }> | undefined> {
  const rows = await sql<RawEvent[]>`
    select session_id, seq, type, at, data from events where session_id = ${id} and type = ${type} order by seq limit 1`;
  return rows[0] ? (toEvent(rows[0]) as Extract<EventRow, { type: T }>) : undefined;
}

/** The `tool.result` of one call, by the call's id. */
export async function toolResultOf(sql: Sql, id: string, callId: string): Promise<Extract<EventRow, { type: 'tool.result' }> | undefined> {
  const rows = await sql<RawEvent[]>`
    select session_id, seq, type, at, data from events
    where session_id = ${id} and type = 'tool.result' and data->>'callId' = ${callId}
    order by seq desc limit 1`;
  return rows[0] ? (toEvent(rows[0]) as Extract<EventRow, { type: 'tool.result' }>) : undefined;
}

/** An event with its link in the session's hash chain (null for events written before chains). */
export type ChainedEventRow = EventRow & { hash: string | null; prevHash: string | null };

/** A session's events with their chain hashes, in seq order: what `keel audit verify` checks. */
export async function getChainedEvents(sql: Sql, id: string): Promise<ChainedEventRow[]> {
  const rows = await sql<Array<RawEvent & { hash: string | null; prev_hash: string | null }>>`
    select session_id, seq, type, at, data, hash, prev_hash from events where session_id = ${id} order by seq`;
  return rows.map((r) => ({ ...toEvent(r), hash: r.hash, prevHash: r.prev_hash }) as ChainedEventRow);
}

/** Sessions forked from `id`, with the step each started after. */
export async function forksOf(sql: Sql, id: string): Promise<Array<{ sessionId: string; atStep: number }>> {
  const rows = await sql<{ session_id: string; at_step: string }[]>`
    select session_id, data->'spec'->'fork'->>'atStep' as at_step from events
    where type = 'session.started' and data->'spec'->'fork'->>'from' = ${id}
    order by at`;
  return rows.map((r) => ({ sessionId: r.session_id, atStep: Number(r.at_step) }));
}

/** What a session has done so far, summed from its events (forked copies not counted as spent). */
export interface SessionTotals {
  /** Tool results recorded. */
  steps: number;
  inputTokens: number;
  outputTokens: number;
  /** The model spec `session.started` recorded (for its price), when it recorded one. */
  model?: { model: string; price?: { inputPerMTok: number; outputPerMTok: number } };
}

/** Totals of each session in `ids`, in one read; sessions without events are absent. */
export async function sessionTotals(sql: Sql, ids: readonly string[]): Promise<Map<string, SessionTotals>> {
  const out = new Map<string, SessionTotals>();
  if (ids.length === 0) return out;
  const rows = await sql<{ session_id: string; steps: string; input: string; output: string; model: SessionTotals['model'] | null }[]>`
    select session_id,
      count(*) filter (where type = 'tool.result') as steps,
      coalesce(sum((data->'usage'->>'inputTokens')::bigint) filter (where type = 'model.call' and data->'copiedFrom' is null), 0) as input,
      coalesce(sum((data->'usage'->>'outputTokens')::bigint) filter (where type = 'model.call' and data->'copiedFrom' is null), 0) as output,
      (array_agg(data->'spec'->'model') filter (where type = 'session.started'))[1] as model
    from events where session_id in ${sql(ids)} and type in ('tool.result', 'model.call', 'session.started')
    group by session_id`;
  for (const r of rows) {
    out.set(r.session_id, { steps: Number(r.steps), inputTokens: Number(r.input), outputTokens: Number(r.output), ...(r.model ? { model: r.model } : {}) });
  }
  return out;
}
