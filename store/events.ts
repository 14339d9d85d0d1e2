import type { SessionEvent } from '../common/events';
import type { Sql } from './db';

/** The channel `recordEvents` notifies on; payload `<sessionId>:<maxSeq>`. */
export const EVENTS_CHANNEL = 'keel_events';

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

/**
 * Append events for one session and apply their side effects on `sessions`,
 * in one transaction. Events whose `(session_id, seq)` already exists are
 * skipped along with their side effects, so a retried write is a no-op.
 */
export async function appendEvents(sql: Sql, sessionId: string, events: readonly SessionEvent[]): Promise<void> {
  if (events.length === 0) return;
  const rows = events.map((e) => ({
    session_id: sessionId,
    seq: e.seq,
    type: e.type,
    data: sql.json(storable(e.data) as Json),
  }));
  if (!events.some((e) => SESSION_ROW_EVENTS.has(e.type))) {
    // Most steps (model calls, tool calls and results) touch only `events`: one statement,
    // one round trip. The notification is delivered on commit, like the transaction's below.
    await sql`
      with inserted as (
        insert into events ${sql(rows)}
        on conflict (session_id, seq) do nothing
        returning seq)
      select pg_notify(${EVENTS_CHANNEL}, ${sessionId} || ':' || max(seq)) from inserted having count(*) > 0`;
    return;
  }
  await sql.begin(async (tx) => {
    const inserted = await tx<{ seq: number; type: string; data: Record<string, unknown> }[]>`
      insert into events ${tx(rows)}
      on conflict (session_id, seq) do nothing
      returning seq, type, data`;
    if (inserted.length === 0) return;
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
  });
}
