/**
 * A local directory as a snapshot: the same version 2 manifest the sandbox's
 * executor writes (sandbox/keel_executor/snapshots.py), built on the host and
 * stored in the blob store, so a sandbox restores a seed exactly as it restores
 * any other snapshot. The objects' text must match the executor's byte for byte
 * (`_tree_text`, `_root_text`): the executor rebuilds each tree it is sent and
 * checks it against its sha, and an unchanged directory must keep its sha so
 * the first step's snapshot diffs against the seed.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { isAbsolute, join, posix } from 'node:path';
import type { BlobStore } from '../blobs';
import { SessionError } from '../common/errors';

/** The roots every snapshot names, in the executor's order (layout.py SNAPSHOT_ROOTS). */
export const SNAPSHOT_ROOTS = ['/workspace', '/home/keel'] as const;
const VERSION = 2;
/** Files up to this size are read once (hashed and stored from memory); larger ones are streamed twice. */
const IN_MEMORY = 1 << 20;

/** A bad workspace source: the message says what and where. */
export class WorkspaceError extends SessionError {
  override name = 'WorkspaceError';
}

/** What a seed stored: its snapshot id and size, as the session spec and the `sandbox.snapshot` event carry them. */
export interface SeedSnapshot {
  /** The snapshot id (sha256 of its root object). */
  snapshot: string;
  files: number;
  bytes: number;
  /** Bytes the blob store did not have yet. */
  uploadedBytes: number;
}

type Kid =
  | { name: string; type: 'file'; mode: number; size: number; sha: string }
  | { name: string; type: 'dir'; mode: number; tree: string }
  | { name: string; type: 'symlink'; target: string };

const ESCAPES: Record<string, string> = { '\\': '\\\\', '"': '\\"', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Python's `json.encoder.encode_basestring_ascii`: every code unit outside ' '..'~' escaped, lowercase hex. */
export function pyAscii(s: string): string {
  return `"${s.replace(/[\\"]|[^\x20-\x7e]/g, (c) => ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
}

function kidJson(k: Kid): string {
  if (k.type === 'file') return `{"name":${pyAscii(k.name)},"type":"file","mode":${k.mode},"size":${k.size},"sha":"${k.sha}"}`;
  if (k.type === 'dir') return `{"name":${pyAscii(k.name)},"type":"dir","mode":${k.mode},"tree":"${k.tree}"}`;
  return `{"name":${pyAscii(k.name)},"type":"symlink","target":${pyAscii(k.target)}}`;
}

/** Python sorts names by code point: the same as comparing their UTF-8 bytes. */
const byName = (a: Kid, b: Kid): number => Buffer.compare(Buffer.from(a.name, 'utf8'), Buffer.from(b.name, 'utf8'));

export function treeText(kids: Kid[]): string {
  return `{"version":${VERSION},"tree":[${[...kids].sort(byName).map(kidJson).join(',')}]}`;
}

export function rootText(roots: Array<{ path: string; mode: number; tree: string }>): string {
  const body = roots.map((r) => `{"path":${pyAscii(r.path)},"mode":${r.mode},"tree":"${r.tree}"}`).join(',');
  return `{"version":${VERSION},"roots":${JSON.stringify(SNAPSHOT_ROOTS)},"trees":[${body}]}`;
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

/** Whether symlink `target`, found at `rel` (relative to the root), stays inside the root. */
export function linkStaysInside(rel: string, target: string): boolean {
  if (target === '' || isAbsolute(target) || target.startsWith('/')) return false;
  const resolved = posix.normalize(posix.join(posix.dirname(rel), target));
  return resolved !== '..' && !resolved.startsWith('../');
}

/**
 * Store the files under `dir` as a snapshot whose `/workspace` holds them (and whose `/home/keel`
 * is empty, as in a fresh sandbox). Refuses symlinks that point outside `dir` (or anywhere absolute),
 * and anything that is not a regular file, directory or symlink. Blobs go first, the root object last,
 * so a stored root implies everything it names is stored.
 */
export async function storeDirectory(dir: string, blobs: BlobStore, label = dir): Promise<SeedSnapshot> {
  let files = 0;
  let bytes = 0;
  let uploadedBytes = 0;
  const objects = new Map<string, string>();
  const shas = new Set<string>();

  const walk = async (abs: string, rel: string): Promise<string> => {
    const kids: Kid[] = [];
    for (const raw of await readdir(abs, { encoding: 'buffer' })) {
      const name = raw.toString('utf8');
      if (!Buffer.from(name, 'utf8').equals(raw)) throw new WorkspaceError(`${label}: ${JSON.stringify(posix.join(rel, name))} is not a UTF-8 file name`);
      const path = join(abs, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(path);
      const mode = st.mode & 0o7777;
      if (st.isDirectory()) kids.push({ name, type: 'dir', mode, tree: await walk(path, r) });
      else if (st.isSymbolicLink()) {
        const target = await readlink(path);
        if (!linkStaysInside(r, target)) throw new WorkspaceError(`${label}: symlink ${r} -> ${target} points outside the workspace`);
        kids.push({ name, type: 'symlink', target });
      } else if (st.isFile()) {
        let sha: string;
        let size: number;
        if (st.size <= IN_MEMORY) {
          const data = await readFile(path);
          sha = sha256(data);
          size = data.length;
          uploadedBytes += await blobs.put(sha, data);
        } else {
          const h = createHash('sha256');
          size = 0;
          for await (const chunk of createReadStream(path)) {
            h.update(chunk as Buffer);
            size += (chunk as Buffer).length;
          }
          sha = h.digest('hex');
          uploadedBytes += await blobs.put(sha, createReadStream(path) as AsyncIterable<Buffer>);
        }
        shas.add(sha);
        files++;
        bytes += size;
        kids.push({ name, type: 'file', mode, size, sha });
      } else {
        throw new WorkspaceError(`${label}: ${r} is not a regular file, directory or symlink (sockets, fifos and devices cannot be seeded)`);
      }
    }
    const text = treeText(kids);
    const id = sha256(text);
    objects.set(id, text);
    return id;
  };

  const workspace = await walk(dir, '');
  const home = treeText([]);
  objects.set(sha256(home), home);
  for (const [id, text] of objects) await blobs.putManifest(id, text);
  // /workspace keeps a fresh sandbox's mode, whatever the source directory's (a temporary one is 0700).
  const root = rootText([
    { path: '/workspace', mode: 0o755, tree: workspace },
    { path: '/home/keel', mode: 0o755, tree: sha256(home) },
  ]);
  const snapshot = sha256(root);
  // Blobs the store had already are marked in use: garbage collection must not take them before the
  // session's first event names the seed (its grace period covers the time in between).
  await blobs.keep([...shas, ...objects.keys()]);
  await blobs.putManifest(snapshot, root);
  await blobs.keep([snapshot]);
  return { snapshot, files, bytes, uploadedBytes };
}
