/**
 * `keel diff <id> --step N`: what step N did to the sandbox's files, from the
 * snapshots recorded in the event log and the manifests in the blob store.
 */
import type { Sql } from 'postgres';
import { DirBlobStore, type BlobStore } from '../activities/blobs';
import { parseManifest, type Manifest, type ManifestEntry } from '../activities/sandbox/snapshots';
import { connect, getEvents, type EventRow } from '../activities/store';
import type { SnapshotInfo } from '../common/types';

/** Files at most this big get an inline text diff. */
export const TEXT_DIFF_LIMIT = 64 * 1024;
const CONTEXT_LINES = 3;
/** Beyond this many line pairs the inline diff is skipped (the LCS table would be too big). */
const MAX_DIFF_CELLS = 4_000_000;

export interface ManifestDiff {
  added: ManifestEntry[];
  removed: ManifestEntry[];
  modified: Array<{ before: ManifestEntry; after: ManifestEntry }>;
}

function same(a: ManifestEntry, b: ManifestEntry): boolean {
  if (a.type !== b.type) return false;
  if (a.type === 'file' && b.type === 'file') return a.sha === b.sha && a.mode === b.mode;
  if (a.type === 'symlink' && b.type === 'symlink') return a.target === b.target;
  if (a.type === 'dir' && b.type === 'dir') return a.mode === b.mode;
  return false;
}

/** Entries added, removed and changed (content, mode, type or link target) from `a` to `b`; `a` undefined is empty. Sorted by path. */
export function diffManifests(a: Pick<Manifest, 'entries'> | undefined, b: Pick<Manifest, 'entries'>): ManifestDiff {
  const before = new Map((a?.entries ?? []).map((e) => [e.path, e]));
  const after = new Map(b.entries.map((e) => [e.path, e]));
  const out: ManifestDiff = { added: [], removed: [], modified: [] };
  for (const e of b.entries) {
    const prev = before.get(e.path);
    if (!prev) out.added.push(e);
    else if (!same(prev, e)) out.modified.push({ before: prev, after: e });
  }
  for (const e of a?.entries ?? []) if (!after.has(e.path)) out.removed.push(e);
  const byPath = (x: { path: string }, y: { path: string }): number => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0);
  out.added.sort(byPath);
  out.removed.sort(byPath);
  out.modified.sort((x, y) => byPath(x.after, y.after));
  return out;
}

/** The snapshot step `step` ended with, and the one before it (undefined: the empty sandbox). */
export function stepSnapshots(events: EventRow[], step: number): { before?: SnapshotInfo; after?: SnapshotInfo } {
  const snaps = events
    .filter((e) => e.type === 'tool.result' && isSnapshot(e.data.snapshot))
    .map((e) => ({ seq: e.seq, step: Number(e.data.step), snapshot: e.data.snapshot as SnapshotInfo }));
  const atStep = snaps.filter((s) => s.step === step);
  const first = atStep[0];
  const last = atStep[atStep.length - 1];
  if (!first || !last) return {};
  const earlier = snaps.filter((s) => s.seq < first.seq);
  const before = earlier[earlier.length - 1]?.snapshot;
  return before ? { before, after: last.snapshot } : { after: last.snapshot };
}

function isSnapshot(v: unknown): v is SnapshotInfo {
  return typeof v === 'object' && v !== null && typeof (v as { id?: unknown }).id === 'string';
}

/** A unified diff of two texts by lines (LCS), `---`/`+++` headers and hunks with 3 lines of context. Empty when equal. */
export function unifiedDiff(path: string, a: string, b: string): string {
  if (a === b) return '';
  const x = splitLines(a);
  const y = splitLines(b);
  const n = x.length;
  const m = y.length;
  if ((n + 1) * (m + 1) > MAX_DIFF_CELLS) return `--- a${path}\n+++ b${path}\n(too many lines for an inline diff)\n`;
  // lcs[i][j] = length of the LCS of x[i..] and y[j..]
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * w + j] = x[i] === y[j] ? (lcs[(i + 1) * w + j + 1] as number) + 1 : Math.max(lcs[(i + 1) * w + j] as number, lcs[i * w + j + 1] as number);
    }
  }
  type Op = { kind: ' ' | '-' | '+'; line: string };
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) {
      ops.push({ kind: ' ', line: x[i++] as string });
      j++;
    }
    else if (i < n && (j >= m || (lcs[(i + 1) * w + j] as number) >= (lcs[i * w + j + 1] as number))) ops.push({ kind: '-', line: x[i++] as string });
    else ops.push({ kind: '+', line: y[j++] as string });
  }
  const out = [`--- a${path}`, `+++ b${path}`];
  let k = 0;
  while (k < ops.length) {
    while (k < ops.length && ops[k]?.kind === ' ') k++;
    if (k >= ops.length) break;
    const start = Math.max(0, k - CONTEXT_LINES);
    let end = k;
    // Extend the hunk while changes are within 2 * context of each other.
    for (;;) {
      while (end < ops.length && ops[end]?.kind !== ' ') end++;
      let gap = end;
      while (gap < ops.length && ops[gap]?.kind === ' ') gap++;
      if (gap < ops.length && gap - end <= 2 * CONTEXT_LINES) end = gap;
      else {
        end = Math.min(ops.length, end + CONTEXT_LINES);
        break;
      }
    }
    const hunk = ops.slice(start, end);
    const aStart = countBefore(ops, start, '+') + 1;
    const bStart = countBefore(ops, start, '-') + 1;
    const aLen = hunk.filter((o) => o.kind !== '+').length;
    const bLen = hunk.filter((o) => o.kind !== '-').length;
    out.push(`@@ -${aLen ? aStart : aStart - 1},${aLen} +${bLen ? bStart : bStart - 1},${bLen} @@`);
    for (const o of hunk) out.push(`${o.kind}${o.line}`);
    k = end;
  }
  const unterminated = (t: string): boolean => t !== '' && !t.endsWith('\n');
  if (unterminated(a) || unterminated(b)) out.push('\\ No newline at end of file');
  return `${out.join('\n')}\n`;
}

/** Lines of `ops` before index `upTo` that exist on one side (those not of kind `skip`). */
function countBefore(ops: Array<{ kind: string }>, upTo: number, skip: string): number {
  let c = 0;
  for (let i = 0; i < upTo; i++) if (ops[i]?.kind !== skip) c++;
  return c;
}

function splitLines(s: string): string[] {
  if (s === '') return [];
  const lines = s.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Decode as text when small, valid UTF-8 and free of NUL bytes; else undefined. */
export function asText(data: Buffer): string | undefined {
  if (data.length > TEXT_DIFF_LIMIT || data.includes(0)) return undefined;
  const text = data.toString('utf8');
  return Buffer.from(text, 'utf8').equals(data) ? text : undefined;
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

export interface DiffOptions {
  json?: boolean;
  /** Where lines go. @default console.log */
  print?: (line: string) => void;
  /** An open connection to use instead of connecting to `config.databaseUrl`. */
  sql?: Sql;
  /** @default a DirBlobStore in `config.blobDir` */
  blobs?: BlobStore;
}

async function readAll(blobs: BlobStore, sha: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await blobs.get(sha)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function loadManifest(blobs: BlobStore, id: string): Promise<Manifest> {
  const text = await blobs.getManifest(id);
  if (text === undefined) throw new Error(`snapshot ${id} is not in the blob store; is KEEL_BLOB_DIR the one the sandbox hosts use?`);
  return parseManifest(text);
}

function describe(e: ManifestEntry): string {
  if (e.type === 'dir') return `${e.path}/`;
  if (e.type === 'symlink') return `${e.path} -> ${e.target}`;
  return `${e.path} (${e.size} B)`;
}

/**
 * Show what step `step` of a session changed in its sandbox: added, removed and
 * modified paths, and a unified diff of each changed text file under 64 KB.
 * Throws when the session has no such step or the blob store lacks a snapshot.
 */
export async function runDiff(
  config: { databaseUrl: string; blobDir: string },
  sessionId: string,
  step: number,
  opts: DiffOptions = {},
): Promise<StepDiff> {
  const print = opts.print ?? ((line: string) => console.log(line));
  const blobs = opts.blobs ?? new DirBlobStore(config.blobDir);
  const sql = opts.sql ?? connect(config.databaseUrl);
  let events: EventRow[];
  try {
    events = await getEvents(sql, sessionId);
  } finally {
    if (!opts.sql) await sql.end({ timeout: 2 });
  }
  if (events.length === 0) throw new Error(`no events for session ${sessionId}`);
  const { before, after } = stepSnapshots(events, step);
  const result: StepDiff = { sessionId, step, added: [], removed: [], modified: [], textDiffs: {} };
  if (!after) {
    if (opts.json) print(JSON.stringify(result));
    else print(`step ${step} of ${sessionId} changed no files (no snapshot recorded at that step)`);
    return result;
  }
  result.after = after.id;
  if (before) result.before = before.id;
  const a = before ? await loadManifest(blobs, before.id) : undefined;
  const b = await loadManifest(blobs, after.id);
  Object.assign(result, diffManifests(a, b));
  for (const { before: x, after: y } of result.modified) {
    if (x.type !== 'file' || y.type !== 'file' || x.sha === y.sha) continue;
    if (x.size > TEXT_DIFF_LIMIT || y.size > TEXT_DIFF_LIMIT) continue;
    const [ta, tb] = [asText(await readAll(blobs, x.sha)), asText(await readAll(blobs, y.sha))];
    if (ta !== undefined && tb !== undefined) result.textDiffs[y.path] = unifiedDiff(y.path, ta, tb);
  }
  for (const e of result.added) {
    if (e.type !== 'file' || e.size > TEXT_DIFF_LIMIT) continue;
    const t = asText(await readAll(blobs, e.sha));
    if (t !== undefined && t !== '') result.textDiffs[e.path] = unifiedDiff(e.path, '', t).replace(`--- a${e.path}`, '--- /dev/null');
  }

  if (opts.json) {
    print(JSON.stringify(result));
    return result;
  }
  print(`step ${step} of ${sessionId}: snapshot ${after.id.slice(0, 12)} vs ${before ? before.id.slice(0, 12) : 'empty sandbox'}`);
  print(`  ${result.added.length} added, ${result.modified.length} modified, ${result.removed.length} removed`);
  for (const e of result.added) print(`  A ${describe(e)}`);
  for (const { before: x, after: y } of result.modified) {
    const what = x.type !== y.type ? `${x.type} -> ${y.type}` : x.type === 'file' && y.type === 'file' ? (x.sha === y.sha ? `mode ${x.mode.toString(8)} -> ${y.mode.toString(8)}` : `${x.size} B -> ${y.size} B`) : 'changed';
    print(`  M ${y.path} (${what})`);
  }
  for (const e of result.removed) print(`  D ${describe(e)}`);
  for (const text of Object.values(result.textDiffs)) print(`\n${text.trimEnd()}`);
  return result;
}
