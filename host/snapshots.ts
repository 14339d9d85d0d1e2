/**
 * Host side of sandbox snapshots: ask the executor for a manifest, upload the
 * file contents the blob store lacks, store the manifest; and the reverse,
 * writing a stored snapshot into a fresh container.
 *
 * Transfer goes through the executor (base64 in JSON lines over the attach
 * stream) rather than the Engine's archive API: /home/keel is a tmpfs, which
 * `getArchive`/`putArchive` cannot see (they work on the container's root fs
 * view; dockerd 20.10 refuses putArchive on a read-only root outright), and
 * files the executor writes get the sandbox user's ownership for free.
 */
import { BlobMismatchError, readBlob, type BlobStore } from '../blobs';
import { readManifest, type ManifestEntry } from '../common/manifest';
import type { SnapshotInfo } from '../common/types';
import type { Progress } from '../common/progress';
import type { ExecutorClient, ExecutorResponse } from './executor-client';

/** Bytes per transfer request, raw (base64 adds a third). */
export const TRANSFER_CHUNK = 1 << 20;
/** Transfer requests in flight at once. */
export const TRANSFER_CONCURRENCY = 4;
/**
 * Blob store writes (or reads) at once for the small files of one transfer request. One after another,
 * each blob's fsync waited for the one before; at once, the file system commits them together
 * (a directory store) or the requests overlap (S3).
 */
const BLOB_CONCURRENCY = 16;
const OP_TIMEOUT_MS = 120_000;
const WALK_TIMEOUT_MS = 600_000;
/**
 * Changed files up to this many bytes in all come back inside the `snapshot` answer, with the manifest,
 * so the snapshot after a typical tool call is one round trip instead of three or more.
 */
export const INLINE_BYTES = 256 * 1024;
/** A file that changes while it is uploaded makes the snapshot start over, at most this often. */
const SNAPSHOT_ATTEMPTS = 3;

/** What the executor's `snapshot` op answers. */
export interface ExecutorSnapshot {
  id: string;
  parent: string | null;
  unchanged: boolean;
  entries: number;
  files: number;
  bytes: number;
  manifestBytes: number;
  added: number;
  modified: number;
  removed: number;
  changedBytes: number;
  /** Files read and hashed by this walk (the rest were vouched for by the stat cache). */
  filesHashed: number;
  bytesHashed: number;
  /** Sockets, fifos, devices and unreadable entries left out. */
  skipped: number;
  /** One [sha, path, size] per distinct content added or modified since the parent. */
  upload: Array<[string, string, number]>;
  /** One [sha, bytes] per directory object (manifest version 2) the parent lacks; absent from older executors. */
  trees?: Array<[string, number]>;
  durationMs: number;
  /**
   * How changes were found: `inotify` (only directories with events, and files inotify cannot vouch for, were
   * looked at) or `walk: <why>` (every file stat'ed: first snapshot, restore, queue overflow, ...). Absent from older executors.
   */
  detection?: string;
  /** inotify events drained by this snapshot (detection `inotify`). */
  events?: number;
  /** The manifest text, when it changed and is small (asked for with `inline`). */
  manifest?: string;
  /** Base64 contents of some `upload` files, by sha (asked for with `inline`). */
  data?: Record<string, string>;
  /** Texts of some `trees`, by sha (asked for with `inline`). */
  objects?: Record<string, string>;
}

/** A snapshot and how it was made. `info` is null when nothing changed since the parent. */
export interface SnapshotOutcome {
  info: SnapshotInfo | null;
  executor: ExecutorSnapshot;
  uploadedFiles: number;
}

/** The snapshot (or parent) named is not in the blob store. */
export class SnapshotMissingError extends Error {
  constructor(readonly id: string) {
    super(`snapshot manifest ${id} is not in the blob store`);
    this.name = 'SnapshotMissingError';
  }
}

/** The executor refused a snapshot request. */
export class SnapshotOpError extends Error {
  constructor(readonly op: string, readonly code: string, detail: string) {
    super(`executor ${op} failed: ${code}: ${detail}`);
    this.name = 'SnapshotOpError';
  }
}

/** A file changed or vanished between being hashed and being uploaded. */
class ChangedUnderfootError extends Error {}

async function call(client: ExecutorClient, op: string, args: Record<string, unknown>, timeoutMs = OP_TIMEOUT_MS): Promise<Record<string, unknown>> {
  const r: ExecutorResponse = await client.request(op, args, { timeoutMs });
  if (!r.ok) throw new SnapshotOpError(op, r.error.code, r.error.message);
  return r.result;
}

/** Run tasks with at most `n` at once; rejects with the first failure. */
export async function pool(tasks: Array<() => Promise<void>>, n: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const task = tasks[next++];
      if (task) await task();
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, tasks.length) }, worker));
}

/** Walk the sandbox; sends the parent's manifest from the store when the executor does not hold it. */
async function executorSnapshot(client: ExecutorClient, blobs: BlobStore, parent: string | undefined, walk: boolean): Promise<ExecutorSnapshot> {
  const args = { ...(parent ? { parent } : {}), inline: INLINE_BYTES, ...(walk ? { walk: true } : {}) };
  try {
    return (await call(client, 'snapshot', args, WALK_TIMEOUT_MS)) as unknown as ExecutorSnapshot;
  } catch (err) {
    if (!(err instanceof SnapshotOpError && err.code === 'UnknownParent' && parent)) throw err;
  }
  const stored = await readManifest(blobs, parent);
  if (stored === undefined) throw new SnapshotMissingError(parent);
  await call(client, 'load_manifest', manifestArgs(parent, stored.objects));
  return (await call(client, 'snapshot', args, WALK_TIMEOUT_MS)) as unknown as ExecutorSnapshot;
}

/** The `id`, `manifest` and `objects` (its trees, version 2) arguments that hand a stored snapshot to the executor. */
function manifestArgs(id: string, objects: Map<string, string>): Record<string, unknown> {
  const trees = Object.fromEntries([...objects].filter(([sha]) => sha !== id));
  return { id, manifest: objects.get(id), objects: trees };
}

async function readRange(client: ExecutorClient, items: Array<{ path: string; offset: number; length: number }>): Promise<Buffer[]> {
  const r = await call(client, 'read_files', { items });
  const answers = r.items as Array<{ data?: string; error?: string }>;
  return answers.map((a, i) => {
    if (a.data === undefined) throw new ChangedUnderfootError(`${items[i]?.path}: ${a.error ?? 'unreadable'}`);
    return Buffer.from(a.data, 'base64');
  });
}

/**
 * Upload what the store lacks; then the manifest, last, so a stored manifest implies all its blobs are
 * stored. What is already there is kept (marked in use), so garbage collection cannot remove a blob
 * between this check and the event that will reference it.
 */
async function upload(client: ExecutorClient, blobs: BlobStore, snap: ExecutorSnapshot, onProgress?: (p: Progress) => void): Promise<{ bytes: number; files: number }> {
  const shas = snap.upload.map(([sha]) => sha);
  const trees = (snap.trees ?? []).map(([sha]) => sha);
  const [haveManifest] = await blobs.has([snap.id]);
  if (haveManifest) {
    // Unchanged files are referenced through the parent; what changed (everything, without a parent) is kept here.
    await blobs.keep([snap.id, ...trees, ...shas]);
    return { bytes: 0, files: 0 };
  }
  const present = await blobs.has(shas);
  const missing = snap.upload.filter((_, i) => !present[i]);
  await blobs.keep(shas.filter((_, i) => present[i]));
  let bytes = 0;
  // Progress: files stored of those missing, and their size (as the walk measured it).
  const bytesTotal = missing.reduce((n, [, , size]) => n + size, 0);
  let filesDone = 0;
  let bytesDone = 0;
  const stored = (size: number): void => {
    filesDone++;
    bytesDone += size;
    onProgress?.({ phase: 'uploading', done: filesDone, total: missing.length, bytesDone, bytesTotal });
  };
  onProgress?.({ phase: 'uploading', done: 0, total: missing.length, bytesDone: 0, bytesTotal });
  const tasks: Array<() => Promise<void>> = [];
  const inline = snap.data ?? {};
  let batch: Array<[string, string, number]> = [];
  let batchBytes = 0;
  const flush = (): void => {
    if (batch.length === 0) return;
    const files = batch;
    batch = [];
    batchBytes = 0;
    tasks.push(async () => {
      const data = await readRange(client, files.map(([, path, size]) => ({ path, offset: 0, length: size })));
      const puts = files.map(([sha, , size], i) => async () => {
        const n = await blobs.put(sha, data[i] as Buffer); // not `bytes += await`: that reads `bytes` before the await
        bytes += n;
        stored(size);
      });
      await pool(puts, BLOB_CONCURRENCY);
    });
  };
  for (const file of missing) {
    const [sha, path, size] = file;
    const data = inline[sha];
    if (data !== undefined) {
      tasks.push(async () => {
        const n = await blobs.put(sha, Buffer.from(data, 'base64'));
        bytes += n;
        stored(size);
      });
      continue;
    }
    if (size > TRANSFER_CHUNK) {
      tasks.push(async () => {
        const n = await blobs.put(sha, readChunks(client, path, size));
        bytes += n;
        stored(size);
      });
      continue;
    }
    if (batchBytes + size > TRANSFER_CHUNK) flush();
    batch.push(file);
    batchBytes += size;
  }
  flush();
  // Directory objects (version 2) the store lacks, inline or fetched; the store keeps those it has.
  const haveTree = await blobs.has(trees);
  await blobs.keep(trees.filter((_, i) => haveTree[i]));
  for (const [i, [sha, size]] of (snap.trees ?? []).entries()) {
    if (haveTree[i]) continue;
    const inlined = snap.objects?.[sha];
    tasks.push(async () => blobs.putManifest(sha, inlined ?? (await fetchObject(client, sha, size))));
  }
  await pool(tasks, TRANSFER_CONCURRENCY);
  await blobs.putManifest(snap.id, snap.manifest ?? (await fetchObject(client, snap.id, snap.manifestBytes)));
  return { bytes, files: missing.length };
}

/** A manifest object's text from the executor, in pieces. */
async function fetchObject(client: ExecutorClient, id: string, size: number): Promise<string> {
  let text = '';
  while (text.length < size) {
    const r = await call(client, 'get_manifest', { id, offset: text.length, length: 4 * TRANSFER_CHUNK });
    const data = String(r.data ?? '');
    if (!data) throw new ChangedUnderfootError(`manifest object ${id} ended early`);
    text += data;
  }
  return text;
}

/** A large file's bytes in order, with up to {@link TRANSFER_CONCURRENCY} chunk reads ahead. */
async function* readChunks(client: ExecutorClient, path: string, size: number): AsyncGenerator<Buffer> {
  const ahead: Array<Promise<Buffer>> = [];
  let offset = 0;
  const more = (): void => {
    while (ahead.length < TRANSFER_CONCURRENCY && offset < size) {
      const p = readRange(client, [{ path, offset, length: Math.min(TRANSFER_CHUNK, size - offset) }]).then((b) => b[0] as Buffer);
      p.catch(() => undefined); // observed when awaited; do not crash the process meanwhile
      ahead.push(p);
      offset += TRANSFER_CHUNK;
    }
  };
  more();
  while (ahead.length > 0) {
    const chunk = await (ahead.shift() as Promise<Buffer>);
    more();
    yield chunk;
  }
}

/**
 * Snapshot the sandbox behind `client` into `blobs`, compared with `parent`.
 * `info` is null when the files are exactly those of `parent`. `opts.walk` makes the executor stat every
 * file instead of trusting its inotify watches (benchmarks compare the two; the result is the same).
 */
export async function takeSnapshot(
  client: ExecutorClient,
  blobs: BlobStore,
  parent?: string,
  opts: { walk?: boolean; onProgress?: (p: Progress) => void } = {},
): Promise<SnapshotOutcome> {
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    // The walk runs in the sandbox and reports nothing until done: its phase is all there is to say.
    opts.onProgress?.({ phase: 'hashing', done: 0, total: 0 });
    const snap = await executorSnapshot(client, blobs, parent, opts.walk === true);
    if (snap.unchanged) return { info: null, executor: snap, uploadedFiles: 0 };
    let uploaded: { bytes: number; files: number };
    try {
      uploaded = await upload(client, blobs, snap, opts.onProgress);
    } catch (err) {
      // A background process wrote a file after it was hashed: walk again.
      if ((err instanceof BlobMismatchError || err instanceof ChangedUnderfootError) && attempt < SNAPSHOT_ATTEMPTS) continue;
      throw err;
    }
    const info: SnapshotInfo = {
      id: snap.id,
      files: snap.files,
      bytes: snap.bytes,
      added: snap.added,
      modified: snap.modified,
      removed: snap.removed,
      changedBytes: snap.changedBytes,
      uploadedBytes: uploaded.bytes,
      durationMs: Date.now() - started,
    };
    if (parent) info.parent = parent;
    return { info, executor: snap, uploadedFiles: uploaded.files };
  }
}

/** What {@link restoreSnapshot} did. */
export interface RestoreOutcome {
  id: string;
  files: number;
  bytes: number;
  durationMs: number;
}

/**
 * Make the sandbox's writable files exactly those of snapshot `id`: everything
 * under the roots is replaced. The executor verifies every file's hash at the end
 * and keeps the manifest, so the next snapshot diffs against it cheaply.
 */
export async function restoreSnapshot(client: ExecutorClient, blobs: BlobStore, id: string, onProgress?: (p: Progress) => void): Promise<RestoreOutcome> {
  const started = Date.now();
  const stored = await readManifest(blobs, id);
  if (stored === undefined) throw new SnapshotMissingError(id);
  const files = stored.manifest.entries.filter((e): e is Extract<ManifestEntry, { type: 'file' }> => e.type === 'file');
  await call(client, 'restore_begin', manifestArgs(id, stored.objects), WALK_TIMEOUT_MS);

  const bytesTotal = files.reduce((n, f) => n + f.size, 0);
  let filesDone = 0;
  let bytesDone = 0;
  const written = (n: number, size: number): void => {
    filesDone += n;
    bytesDone += size;
    onProgress?.({ phase: 'restoring', done: filesDone, total: files.length, bytesDone, bytesTotal });
  };
  written(files.filter((f) => f.size === 0).length, 0); // restore_begin created the empty ones
  const tasks: Array<() => Promise<void>> = [];
  let batch: typeof files = [];
  let batchBytes = 0;
  const flush = (): void => {
    if (batch.length === 0) return;
    const group = batch;
    const groupBytes = batchBytes;
    batch = [];
    batchBytes = 0;
    tasks.push(async () => {
      const items: Array<{ path: string; offset: number; data: string }> = [];
      await pool(
        group.map((f, i) => async () => {
          items[i] = { path: f.path, offset: 0, data: (await readBlob(blobs, f.sha)).toString('base64') };
        }),
        BLOB_CONCURRENCY,
      );
      await call(client, 'write_files', { items });
      written(group.length, groupBytes);
    });
  };
  let bytes = 0;
  for (const f of files) {
    bytes += f.size;
    if (f.size === 0) continue; // restore_begin created it
    if (f.size > TRANSFER_CHUNK) {
      tasks.push(async () => {
        await writeLarge(client, blobs, f.path, f.sha);
        written(1, f.size);
      });
      continue;
    }
    if (batchBytes + f.size > TRANSFER_CHUNK) flush();
    batch.push(f);
    batchBytes += f.size;
  }
  flush();
  await pool(tasks, TRANSFER_CONCURRENCY);
  await call(client, 'restore_finish', { id }, WALK_TIMEOUT_MS);
  return { id, files: files.length, bytes, durationMs: Date.now() - started };
}

/** Stream one large blob into the sandbox, several chunks in flight. */
async function writeLarge(client: ExecutorClient, blobs: BlobStore, path: string, sha: string): Promise<void> {
  const inflight = new Set<Promise<void>>();
  let offset = 0;
  let pending: Buffer = Buffer.alloc(0);
  const send = async (data: Buffer, at: number): Promise<void> => {
    const p = call(client, 'write_files', { items: [{ path, offset: at, data: data.toString('base64') }] }).then(() => undefined);
    const tracked = p.finally(() => inflight.delete(tracked));
    tracked.catch(() => undefined);
    inflight.add(tracked);
    if (inflight.size >= TRANSFER_CONCURRENCY) await Promise.race(inflight);
  };
  for await (const chunk of await blobs.get(sha)) {
    pending = pending.length ? Buffer.concat([pending, chunk as Buffer]) : (chunk as Buffer);
    while (pending.length >= TRANSFER_CHUNK) {
      await send(pending.subarray(0, TRANSFER_CHUNK), offset);
      offset += TRANSFER_CHUNK;
      pending = pending.subarray(TRANSFER_CHUNK);
    }
  }
  if (pending.length) await send(pending, offset);
  await Promise.all(inflight);
}
