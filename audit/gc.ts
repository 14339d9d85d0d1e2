/**
 * Blob garbage collection: remove blobs that no retained session references.
 *
 * Retained: every session that has not ended, or ended less than `retentionDays`
 * ago (and every session the index does not know, to be safe). A session
 * references the snapshots its events name (and through their manifests every
 * file in them), and the stored outputs, arguments and texts of its events.
 *
 * Safe against writers running at the same time: a blob written or kept
 * (`BlobStore.keep`, which a writer calls for blobs it found already stored) less
 * than `graceSec` ago is never removed, so a blob uploaded by a live session
 * survives until the event that references it is recorded. What this cannot see
 * is a reference recorded more than `graceSec` after its blob was written or
 * kept, e.g. a session worker down for longer than that between a snapshot and
 * its event: keep the grace period well above any such outage (default: a day).
 */
import type { BlobStore } from '../blobs';
import type { EventRow } from '../common/events';
import { addReferences } from '../common/manifest';
import type { ContentRef } from '../common/types';
import type { Sql } from '../store';

export interface GcOptions {
  /** Sessions that ended more than this many days ago are no longer retained. @default 30 */
  retentionDays?: number;
  /** Blobs written or kept more recently than this are never removed. @default 86400 (a day) */
  graceSec?: number;
  /** Count what would go, remove nothing. @default false */
  dryRun?: boolean;
}

export interface GcReport {
  /** Sessions whose references were kept, and those past retention. */
  retainedSessions: number;
  expiredSessions: number;
  /** Distinct blobs referenced by retained sessions (manifests and their files included). */
  referenced: number;
  /** Blobs in the store, and what happened to each that is not referenced. */
  listed: number;
  removed: number;
  removedBytes: number;
  /** Unreferenced, but written or kept within the grace period. */
  young: number;
  /** Referenced manifests the store did not have (already gone, or never uploaded). */
  missingManifests: number;
}

/** Event types whose payload can reference blobs. */
const REFERENCING: readonly EventRow['type'][] = [
  'tool.call',
  'tool.result',
  'model.call',
  'sandbox.snapshot',
  'sandbox.restored',
  'sandbox.resumed',
  'sandbox.suspended',
  'sandbox.removed',
  'session.archived',
];

/**
 * The blobs and snapshot manifests one event references. Read defensively: the log also holds
 * rows written by older versions, and GC must never fail (or keep too little) because of one.
 */
export function referencesOf(e: EventRow): { blobs: string[]; snapshots: string[] } {
  const blobs: string[] = [];
  const snapshots: string[] = [];
  const ref = (r: ContentRef | undefined): void => {
    if (r && typeof r.sha === 'string') blobs.push(r.sha);
  };
  switch (e.type) {
    case 'tool.call':
      ref(e.data.inputRef);
      break;
    case 'tool.result':
      ref(e.data.outputRef);
      if (typeof e.data.snapshot?.id === 'string') snapshots.push(e.data.snapshot.id);
      break;
    case 'model.call':
      ref(e.data.textRef);
      for (const c of Array.isArray(e.data.toolCalls) ? e.data.toolCalls : []) ref(c?.inputRef);
      break;
    case 'sandbox.snapshot':
      if (typeof e.data.id === 'string') snapshots.push(e.data.id);
      break;
    case 'session.archived':
      ref(e.data.ref);
      break;
    case 'sandbox.restored':
    case 'sandbox.resumed':
    case 'sandbox.suspended':
    case 'sandbox.removed':
      if (typeof e.data.snapshot === 'string') snapshots.push(e.data.snapshot);
      break;
    default:
      break;
  }
  return { blobs, snapshots };
}

/** Remove every blob no retained session references and nobody wrote or kept within the grace period. */
export async function collectGarbage(sql: Sql, blobs: BlobStore, opts: GcOptions = {}): Promise<GcReport> {
  const retentionDays = opts.retentionDays ?? 30;
  const graceMs = (opts.graceSec ?? 86_400) * 1000;
  const report: GcReport = { retainedSessions: 0, expiredSessions: 0, referenced: 0, listed: 0, removed: 0, removedBytes: 0, young: 0, missingManifests: 0 };
  // Ages are measured from before the mark starts, not from the sweep. A blob written or kept
  // earlier than markStart - grace was referenced (by the contract above) before the mark's query
  // began, so the mark sees it. Measured from the sweep instead, a mark slower than the grace
  // period would let a blob written just before it, and referenced during it, look old and unmarked.
  const markStart = Date.now();

  const [counts] = await sql<{ expired: number; retained: number }[]>`
    select count(*) filter (where ended_at < now() - make_interval(days => ${retentionDays}))::int as expired,
           count(*) filter (where ended_at is null or ended_at >= now() - make_interval(days => ${retentionDays}))::int as retained
    from sessions`;
  report.expiredSessions = counts?.expired ?? 0;
  report.retainedSessions = counts?.retained ?? 0;

  // Mark. Events of sessions the index does not know count as retained.
  const marked = new Set<string>();
  const manifests = new Set<string>();
  const cursor = sql<Array<{ session_id: string; seq: number; type: EventRow['type']; at: Date; data: unknown }>>`
    select session_id, seq, type, at, data from events
    where type in ${sql(REFERENCING)}
      and session_id not in (select id from sessions where ended_at < now() - make_interval(days => ${retentionDays}))`.cursor(500);
  for await (const rows of cursor) {
    for (const r of rows) {
      const refs = referencesOf({ sessionId: r.session_id, seq: r.seq, type: r.type, at: r.at, data: r.data } as EventRow);
      for (const sha of refs.blobs) marked.add(sha);
      for (const id of refs.snapshots) manifests.add(id);
    }
  }
  for (const id of manifests) {
    if (!/^[0-9a-f]{64}$/.test(id)) {
      marked.add(id);
      continue;
    }
    // Every object of a snapshot (version 2: its root and directory trees) and every file it holds;
    // trees shared with a snapshot marked before are not read again.
    const whole = await addReferences(blobs, id, marked).catch(() => false);
    if (!whole) {
      marked.add(id);
      report.missingManifests++;
    }
  }
  report.referenced = marked.size;

  // Sweep.
  for await (const blob of blobs.list()) {
    report.listed++;
    if (marked.has(blob.sha)) continue;
    if (markStart - blob.touchedAt < graceMs) {
      report.young++;
      continue;
    }
    if (!opts.dryRun) await blobs.remove(blob.sha);
    report.removed++;
    report.removedBytes += blob.bytes;
  }
  return report;
}
