/**
 * Histories that outlive Temporal's retention. Temporal deletes a closed
 * workflow's history after the namespace's retention period (often a day); when
 * a session has ended, Keel copies its whole history, every run, into the blob
 * store and records a `session.archived` event naming it. Everything that needs
 * the history (verify, replay, rerun, fork, export) reads Temporal first and the
 * archive when Temporal no longer has it.
 */
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { putContent, readBlob, type BlobStore } from '../blobs';
import { firstEvent, getEvents, appendEvents, type Sql } from '../store';
import { sessionHistories } from '../inspect/histories';
import { historyFromJson, historyToJson, type ArchivedRun, type History } from './history';

/** The archive's format; readers accept every format up to the newest they know. */
export const ARCHIVE_FORMAT = 1;

export interface SessionArchive {
  format: number;
  sessionId: string;
  runs: ArchivedRun[];
}

export interface RunHistories {
  runs: Array<{ runId: string; history: History }>;
  /** Where they came from. */
  from: 'temporal' | 'archive';
}

/** Every run's history of a session: from Temporal, else from its archive. Undefined when neither has it. */
export async function loadHistories(sql: Sql, client: Client | undefined, blobs: BlobStore, sessionId: string): Promise<RunHistories | undefined> {
  const started = await firstEvent(sql, sessionId, 'session.started');
  const firstRunId = started?.data.workflowRunId;
  if (client && firstRunId) {
    try {
      const runs = await sessionHistories(client, sessionId, firstRunId);
      return { runs: runs.map((r) => ({ runId: r.runId, history: r.history })), from: 'temporal' };
    } catch (err) {
      if (!(err instanceof WorkflowNotFoundError) && !/not found/i.test((err as Error).message)) throw err;
    }
  }
  const archived = (await getEvents(sql, sessionId, { types: ['session.archived'] })).at(-1);
  if (archived?.type !== 'session.archived') return undefined;
  return { runs: readArchive((await readBlob(blobs, archived.data.ref.sha)).toString('utf8')).runs.map((r) => ({ runId: r.runId, history: historyFromJson(r.history) })), from: 'archive' };
}

/** Parse an archive's text; throws on one newer than this code reads. */
export function readArchive(text: string): SessionArchive {
  const a = JSON.parse(text) as SessionArchive;
  if (typeof a.format !== 'number' || a.format > ARCHIVE_FORMAT) throw new Error(`history archive format ${a.format} is newer than this Keel reads (${ARCHIVE_FORMAT})`);
  return a;
}

/**
 * Archive an ended session's history unless that was done. Returns the event written, or undefined
 * when there was nothing to do (not ended, already archived, or Temporal no longer has it).
 */
export async function archiveSession(sql: Sql, client: Client, blobs: BlobStore, sessionId: string): Promise<boolean> {
  const events = await getEvents(sql, sessionId);
  if (!events.some((e) => e.type === 'session.ended') || events.some((e) => e.type === 'session.archived')) return false;
  const started = events.find((e) => e.type === 'session.started');
  const firstRunId = started?.type === 'session.started' ? started.data.workflowRunId : undefined;
  if (!firstRunId) return false;
  let runs;
  try {
    runs = await sessionHistories(client, sessionId, firstRunId);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
  const archive: SessionArchive = { format: ARCHIVE_FORMAT, sessionId, runs: runs.map((r) => ({ runId: r.runId, history: historyToJson(r.history) })) };
  const ref = await putContent(blobs, JSON.stringify(archive));
  const seq = (events.at(-1)?.seq ?? 0) + 1;
  const historyEvents = runs.reduce((n, r) => n + (r.history.events?.length ?? 0), 0);
  await appendEvents(sql, sessionId, [{ seq, type: 'session.archived', data: { ref, runs: runs.map((r) => r.runId), historyEvents, source: 'archiver' } }]);
  return true;
}

/** Archive every session that ended (and was not archived) within the last `days`. Returns the ids archived. */
export async function archiveEnded(sql: Sql, client: Client, blobs: BlobStore, opts: { days?: number; limit?: number } = {}): Promise<string[]> {
  const rows = await sql<{ id: string }[]>`
    select s.id from sessions s
    where s.ended_at is not null and s.ended_at > now() - make_interval(days => ${opts.days ?? 30})
      and not exists (select 1 from events e where e.session_id = s.id and e.type = 'session.archived')
    order by s.ended_at limit ${opts.limit ?? 50}`;
  const done: string[] = [];
  for (const { id } of rows) if (await archiveSession(sql, client, blobs, id)) done.push(id);
  return done;
}
