import type { ChainHead, SessionEvent } from '../common/events';
import { chainHash } from './chain';
import type { Sql } from './db';

/** The channel `recordEvents` notifies on; payload `<sessionId>:<maxSeq>`. */
export const EVENTS_CHANNEL = 'keel_events';

/** The channel running model calls publish their text on (activities/model/deltas.ts); payload a `ModelDelta` as JSON. */
export const DELTAS_CHANNEL = 'keel_deltas';

type Json = Parameters<Sql['json']>[0];

/** `session.started` data may carry the model as a label or as the whole ModelSpec. */
function modelLabel(model: unknown): string {
  if (typeof model === 'string') return model;
  if (model && typeof model === 'object') {
    const m = model as { provider?: unknown; model?: unknown };
    if (typeof m.provider === 'string' && typeof m.model === 'string') return `${m.provider}:${m.model}`;
  }
  return String(model ?? 'unknown');
}

function str(v: unknown, fallback: string): string {
  return typeof v === 'string' && v.length > 0 ? v : fallback;
}

/** U+0000, and UTF-16 surrogates that are not part of a pair. */
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * Make a value storable as Postgres `jsonb`, which refuses U+0000 and lone surrogates
 * (SQLSTATE 22P02). Tool output can hold the first (`cat` of a binary file); file names
 * that are not valid UTF-8 and models' own output can hold the second. Each such
 * character, in keys too, is recorded as U+FFFD; the rest of the event is kept (large
 * outputs are also kept as they were, byte for byte, in the blob store).
 */
export function storable(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(UNSTORABLE, '\uFFFD');
  if (Array.isArray(value)) return value.map(storable);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[storable(k) as string] = storable(v);
    return out;
  }
  return value;
}

/** Event types that also change the session's row in `sessions`. */
const SESSION_ROW_EVENTS: ReadonlySet<string> = new Set(['session.started', 'session.status', 'session.ended']);

/** The last link of each recently written session's chain, so a step's write needs no extra read. */
const heads = new Map<string, ChainHead>();
const MAX_HEADS = 10_000;

/** The chain hash of the event just before `seq` (undefined: the chain starts at `seq`). */
async function prevHash(sql: Sql, sessionId: string, seq: number): Promise<string | undefined> {
  const cached = heads.get(sessionId);
  if (cached && cached.through === seq - 1) return cached.head;
  const [row] = await sql<{ hash: string | null }[]>`
    select hash from events where session_id = ${sessionId} and seq < ${seq} order by seq desc limit 1`;
  return row?.hash ?? undefined;
}

function remember(sessionId: string, head: ChainHead): void {
  heads.delete(sessionId);
  heads.set(sessionId, head);
  if (heads.size > MAX_HEADS) heads.delete(heads.keys().next().value as string);
}

/**
 * Append events for one session, chained (store/chain.ts), and apply their side effects on
 * `sessions`, in one transaction. Events whose `(session_id, seq)` already exists are skipped
 * along with their side effects, so a retried write is a no-op. Returns the chain's head after
 * the batch, which the workflow keeps in its history.
 */
export async function appendEvents(sql: Sql, sessionId: string, events: readonly SessionEvent[]): Promise<ChainHead | undefined> {
  if (events.length === 0) return undefined;
  const sorted = [...events].sort((a, b) => a.seq - b.seq);
  let prev = await prevHash(sql, sessionId, (sorted[0] as SessionEvent).seq);
  const rows = sorted.map((e) => {
    const data = storable(e.data);
    const hash = chainHash(prev, { sessionId, seq: e.seq, type: e.type, data });
    const row = { session_id: sessionId, seq: e.seq, type: e.type, data: sql.json(data as Json), hash, prev_hash: prev ?? null };
    prev = hash;
    return row;
  });
  const last = rows[rows.length - 1] as (typeof rows)[number];
  const written = await insertRows(sql, sessionId, rows, events.some((e) => SESSION_ROW_EVENTS.has(e.type)));
  // A retry of a batch that was written before: the stored chain is the truth.
  const head: ChainHead = written === rows.length ? { through: last.seq, head: last.hash } : await storedHead(sql, sessionId, last.seq);
  remember(sessionId, head);
  return head;
}

async function storedHead(sql: Sql, sessionId: string, seq: number): Promise<ChainHead> {
  const [row] = await sql<{ hash: string | null }[]>`select hash from events where session_id = ${sessionId} and seq = ${seq}`;
  return { through: seq, head: row?.hash ?? '' };
}

type Row = { session_id: string; seq: number; type: string; data: unknown; hash: string; prev_hash: string | null };

/** Insert rows (skipping seqs already there) and notify listeners; returns how many were new. */
async function insertRows(sql: Sql, sessionId: string, rows: Row[], touchesSession: boolean): Promise<number> {
  if (!touchesSession) {
    // Most steps (model calls, tool calls and results) touch only `events`: one statement,
    // one round trip. The notification is delivered on commit, like the transaction's below.
    const [r] = await sql<{ n: number }[]>`
      with inserted as (
        insert into events ${sql(rows as unknown as Record<string, unknown>[])}
        on conflict (session_id, seq) do nothing
        returning seq),
      notified as (
        select pg_notify(${EVENTS_CHANNEL}, ${sessionId} || ':' || max(seq)) from inserted having count(*) > 0)
      select (select count(*) from inserted)::int as n, (select count(*) from notified) as _`;
    return r?.n ?? 0;
  }
  return sql.begin(async (tx) => {
    const inserted = await tx<{ seq: number; type: string; data: Record<string, unknown> }[]>`
      insert into events ${tx(rows as unknown as Record<string, unknown>[])}
      on conflict (session_id, seq) do nothing
      returning seq, type, data`;
    if (inserted.length === 0) return 0;
    for (const e of [...inserted].sort((a, b) => a.seq - b.seq)) {
      const d = e.data ?? {};
      switch (e.type) {
        case 'session.started':
          await tx`
            insert into sessions (id, tenant, task, model, status, updated_at, workflow_run_id)
            values (${sessionId}, ${str(d.tenant, 'default')}, ${str(d.task, '')}, ${modelLabel(d.model)},
                    'running', now(), ${typeof d.workflowRunId === 'string' ? d.workflowRunId : null})
            on conflict (id) do nothing`;
          break;
        case 'session.status':
          await tx`update sessions set status = ${str(d.status, 'running')}, updated_at = now() where id = ${sessionId}`;
          break;
        case 'session.ended':
          await tx`
            update sessions
            set status = ${str(d.status, 'failed')}, updated_at = now(), ended_at = now(), result = ${tx.json(d as Json)}
            where id = ${sessionId}`;
          break;
        default:
          break;
      }
    }
    const maxSeq = Math.max(...inserted.map((e) => e.seq));
    // Delivered on commit only, so a listener never sees a rolled-back write.
    await tx`select pg_notify(${EVENTS_CHANNEL}, ${`${sessionId}:${maxSeq}`})`;
    return inserted.length;
  });
}
