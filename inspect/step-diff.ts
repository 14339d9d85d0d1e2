/**
 * What one step of a session did to its sandbox's files: from the snapshots the
 * event log records and the manifests and file contents in the blob store.
 * The CLI prints it (`keel diff`); an HTTP API can serve it as is.
 */
import { readBlob, type BlobReader } from '../blobs';
import type { EventRow } from '../common/events';
import { diffManifests, readManifest, type Manifest, type ManifestEntry } from '../common/manifest';
import type { SnapshotInfo } from '../common/types';
import { asText, TEXT_DIFF_LIMIT, unifiedDiff } from './text-diff';

/** The snapshot step `step` ended with, and the one before it: a step's, the seed or a suspension's (undefined: the empty sandbox). */
export function stepSnapshots(events: readonly EventRow[], step: number): { before?: SnapshotInfo; after?: SnapshotInfo } {
  const snaps: Array<{ seq: number; step: number; snapshot: SnapshotInfo }> = [];
  // Snapshots outside a step (the seed, a suspension's) are what the next step started from.
  const between: Array<{ seq: number; snapshot: SnapshotInfo }> = [];
  for (const e of events) {
    if (e.type === 'tool.result' && e.data.snapshot) snaps.push({ seq: e.seq, step: e.data.step, snapshot: e.data.snapshot });
    if (e.type === 'sandbox.snapshot') {
      const { reason: _reason, ...snapshot } = e.data;
      between.push({ seq: e.seq, snapshot });
    }
  }
  const atStep = snaps.filter((s) => s.step === step);
  const first = atStep[0];
  const last = atStep[atStep.length - 1];
  if (!first || !last) return {};
  const before = [...snaps, ...between].filter((s) => s.seq < first.seq).sort((x, y) => x.seq - y.seq).at(-1)?.snapshot;
  return before ? { before, after: last.snapshot } : { after: last.snapshot };
}

/** What `keel diff` reports; `--json` prints it as is. */
export interface StepDiff {
  sessionId: string;
  step: number;
  before?: string;
  after?: string;
  added: ManifestEntry[];
  removed: ManifestEntry[];
  modified: Array<{ before: ManifestEntry; after: ManifestEntry }>;
  /** Unified diffs of changed small text files, by path. */
  textDiffs: Record<string, string>;
}

/** A snapshot's manifest from the store; throws naming the store setting when it is missing. */
export async function loadManifest(blobs: BlobReader, id: string): Promise<Manifest> {
  const stored = await readManifest(blobs, id);
  if (stored === undefined) throw new Error(`snapshot ${id} is not in the blob store; is it the one the sandbox hosts use (KEEL_BLOB_DIR, KEEL_BLOB_S3_BUCKET)?`);
  return stored.manifest;
}

/**
 * Added, removed and modified paths of step `step`, and a unified diff of each
 * changed text file under 64 KB. A step that changed no files has an empty diff.
 */
export async function stepDiff(args: { sessionId: string; step: number; events: readonly EventRow[]; blobs: BlobReader }): Promise<StepDiff> {
  const { sessionId, step, events, blobs } = args;
  const { before, after } = stepSnapshots(events, step);
  const result: StepDiff = { sessionId, step, added: [], removed: [], modified: [], textDiffs: {} };
  if (!after) return result;
  result.after = after.id;
  if (before) result.before = before.id;
  const a = before ? await loadManifest(blobs, before.id) : undefined;
  const b = await loadManifest(blobs, after.id);
  Object.assign(result, diffManifests(a, b));
  for (const { before: x, after: y } of result.modified) {
    if (x.type !== 'file' || y.type !== 'file' || x.sha === y.sha) continue;
    if (x.size > TEXT_DIFF_LIMIT || y.size > TEXT_DIFF_LIMIT) continue;
    const [ta, tb] = [asText(await readBlob(blobs, x.sha)), asText(await readBlob(blobs, y.sha))];
    if (ta !== undefined && tb !== undefined) result.textDiffs[y.path] = unifiedDiff(y.path, ta, tb);
  }
  for (const e of result.added) {
    if (e.type !== 'file' || e.size > TEXT_DIFF_LIMIT) continue;
    const t = asText(await readBlob(blobs, e.sha));
    if (t !== undefined && t !== '') result.textDiffs[e.path] = unifiedDiff(e.path, '', t).replace(`--- a${e.path}`, '--- /dev/null');
  }
  return result;
}
