/**
 * The workspace as it was after a step, from the snapshots alone (no container):
 * written out as a directory or a tar file (`keel files`), or compared with the
 * seed as a patch (`keel files --git-diff`).
 */
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { pack } from 'tar-stream';
import { readBlob, type BlobReader } from '../blobs';
import type { EventRow } from '../common/events';
import type { ManifestEntry } from '../common/manifest';
import { loadManifest } from '../inspect/step-diff';
import { WorkspaceError } from './tree';

const ROOT = '/workspace';

/** Which snapshot holds the workspace after a step. */
export interface WorkspacePoint {
  /** Steps the session took. */
  steps: number;
  /** The step asked for (0: the seed, before the first step); `steps` when none was. */
  step: number;
  /** The snapshot then; undefined when nothing had been written yet (an empty workspace). */
  snapshot?: string;
  /** The seed's snapshot, when the session was started with a workspace. */
  seed?: string;
}

/**
 * The snapshot of the workspace after step `step` (default: the last one): the last snapshot recorded
 * before the model call of step `step + 1`: a step's tool results, a suspension's snapshot, or the seed.
 * Throws {@link WorkspaceError} when `step` is out of range.
 */
export function workspaceAt(sessionId: string, events: readonly EventRow[], step?: number): WorkspacePoint {
  if (events.length === 0) throw new WorkspaceError(`no events for session ${sessionId}`);
  const steps = events.reduce((n, e) => (e.type === 'model.call' ? Math.max(n, e.data.step) : n), 0);
  if (step !== undefined && (!Number.isInteger(step) || step < 0 || step > steps)) {
    throw new WorkspaceError(`session ${sessionId} has ${steps} step${steps === 1 ? '' : 's'}; --step takes 0 (the seed) to ${steps}`);
  }
  const at = step ?? steps;
  const boundary = events.find((e) => e.type === 'model.call' && e.data.step === at + 1)?.seq ?? Infinity;
  let snapshot: string | undefined;
  let seed: string | undefined;
  for (const e of events) {
    if (e.type === 'sandbox.snapshot' && e.data.reason === 'seed') seed = e.data.id;
    if (e.seq >= boundary) continue;
    if (e.type === 'tool.result' && e.data.snapshot) snapshot = e.data.snapshot.id;
    else if (e.type === 'sandbox.snapshot') snapshot = e.data.id;
    else if (e.type === 'session.started' && e.data.spec?.fork?.snapshot && snapshot === undefined) snapshot = e.data.spec.fork.snapshot;
  }
  return { steps, step: at, ...(snapshot ? { snapshot } : {}), ...(seed ? { seed } : {}) };
}

/** The entries under /workspace, with paths relative to it, parents first. */
async function workspaceEntries(blobs: BlobReader, snapshot: string | undefined, skipGit = false): Promise<Array<ManifestEntry & { rel: string }>> {
  if (!snapshot) return [];
  const manifest = await loadManifest(blobs, snapshot);
  const out: Array<ManifestEntry & { rel: string }> = [];
  for (const e of manifest.entries) {
    if (!e.path.startsWith(`${ROOT}/`)) continue;
    const rel = e.path.slice(ROOT.length + 1);
    if (skipGit && rel.split('/').includes('.git')) continue;
    out.push({ ...e, rel });
  }
  return out; // sorted by path: a directory comes before what it holds
}

/** Write the workspace of `snapshot` into `dir`, which must be absent or empty. Returns files written. */
export async function writeWorkspaceDir(blobs: BlobReader, snapshot: string | undefined, dir: string, opts: { skipGit?: boolean } = {}): Promise<number> {
  const existing = await stat(dir).catch(() => undefined);
  if (existing && !existing.isDirectory()) throw new WorkspaceError(`--out ${dir} exists and is not a directory`);
  if (existing && (await readdir(dir)).length > 0) throw new WorkspaceError(`--out ${dir} is not empty; give a new or empty directory`);
  await mkdir(dir, { recursive: true });
  const dirs: Array<[string, number]> = [];
  let files = 0;
  for (const e of await workspaceEntries(blobs, snapshot, opts.skipGit)) {
    const path = join(dir, ...e.rel.split('/'));
    if (e.type === 'dir') {
      await mkdir(path, { mode: 0o700 });
      dirs.push([path, (e.mode & 0o777) | 0o700]);
    } else if (e.type === 'symlink') {
      await symlink(e.target, path); // written as a link, never followed
    } else {
      await pipeline(await blobsStream(blobs, e.sha), createWriteStream(path, { flags: 'wx', mode: 0o600 }));
      await chmod(path, e.mode & 0o777);
      files++;
    }
  }
  for (const [d, m] of dirs.reverse()) await chmod(d, m);
  return files;
}

async function blobsStream(blobs: BlobReader, sha: string): Promise<NodeJS.ReadableStream> {
  return await blobs.get(sha);
}

/** Write the workspace of `snapshot` as a tar file (gzip when it ends in .gz or .tgz). Returns files written. */
export async function writeWorkspaceTar(blobs: BlobReader, snapshot: string | undefined, file: string): Promise<number> {
  if (await stat(file).then(() => true, () => false)) throw new WorkspaceError(`--out ${file} exists; give a new file name`);
  const p = pack();
  const entries = await workspaceEntries(blobs, snapshot);
  let files = 0;
  const out = /\.(gz|tgz)$/i.test(file) ? pipeline(p, createGzip(), createWriteStream(file, { flags: 'wx' })) : pipeline(p, createWriteStream(file, { flags: 'wx' }));
  const add = (header: Parameters<typeof p.entry>[0], body?: Buffer): Promise<void> =>
    new Promise((resolve, reject) => p.entry(header, body ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
  try {
    for (const e of entries) {
      if (e.type === 'dir') await add({ name: `${e.rel}/`, type: 'directory', mode: e.mode & 0o777 });
      else if (e.type === 'symlink') await add({ name: e.rel, type: 'symlink', linkname: e.target });
      else {
        await add({ name: e.rel, type: 'file', mode: e.mode & 0o777, size: e.size }, await readBlob(blobs, e.sha));
        files++;
      }
    }
    p.finalize();
  } catch (err) {
    p.destroy(err as Error);
  }
  await out;
  return files;
}

/**
 * The change from `from` to `to` (snapshots; undefined is an empty workspace) as a unified diff with
 * `a/` and `b/` prefixes, binary files included, `.git` directories left out: `git diff --no-index`
 * over the two trees written to a temporary directory.
 */
export async function workspaceGitDiff(blobs: BlobReader, from: string | undefined, to: string | undefined): Promise<string> {
  const parent = await mkdtemp(join(tmpdir(), 'keel-diff-'));
  try {
    await writeWorkspaceDir(blobs, from, join(parent, 'a'), { skipGit: true });
    await writeWorkspaceDir(blobs, to, join(parent, 'b'), { skipGit: true });
    return await new Promise<string>((resolve, reject) => {
      execFile(
        'git',
        ['-c', 'core.quotepath=false', '-c', 'diff.noprefix=false', 'diff', '--no-index', '--no-color', '--no-ext-diff', '--binary', '--no-prefix', 'a', 'b'],
        { cwd: parent, env: { ...process.env, LC_ALL: 'C', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' }, maxBuffer: 256 << 20 },
        (err, stdout, stderr) => {
          // Exit code 1 means "there are differences".
          if (err && (err as { code?: unknown }).code !== 1) reject(new WorkspaceError(`git diff failed: ${String(stderr).trim() || err.message}`));
          else resolve(String(stdout));
        },
      );
    });
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
}
