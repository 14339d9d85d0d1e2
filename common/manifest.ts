/**
 * Snapshot manifests: the canonical description of a sandbox's writable files
 * that a snapshot id is the sha256 of (the executor writes them; see sandbox/),
 * and the difference between two of them. Pure code: the CLI, the API and audit
 * read them.
 *
 * Version 1 is one object listing every entry, sorted by path. Version 2 is a
 * Merkle tree: the snapshot id names a root object (`{version, roots, trees:
 * [{path, mode, tree}]}`), each `tree` names a directory's object (`{version,
 * tree: [{name, type, ...}]}`, a subdirectory by its own object's sha), all
 * stored as blobs under their sha256. A step that changes one file stores only
 * the objects above it. {@link readManifest} reads both into the same flat list.
 */

/** One entry of a manifest. Paths are absolute, under the snapshot roots. */
export type ManifestEntry =
  | { path: string; type: 'dir'; mode: number }
  | { path: string; type: 'symlink'; target: string }
  | { path: string; type: 'file'; mode: number; size: number; sha: string };

export interface Manifest {
  /** The format version; readers accept every version up to the newest they know. */
  version: number;
  roots: string[];
  entries: ManifestEntry[];
}

const byPath = (x: { path: string }, y: { path: string }): number => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0);

/** The newest manifest format this code reads. */
export const MANIFEST_VERSION = 2;

/** One entry of a version 2 directory object. */
type TreeEntry =
  | { name: string; type: 'dir'; mode: number; tree: string }
  | { name: string; type: 'symlink'; target: string }
  | { name: string; type: 'file'; mode: number; size: number; sha: string };

/** Where manifest objects are read from: a blob store, or an exported bundle. */
export interface ManifestSource {
  getManifest(id: string): Promise<string | undefined>;
}

/** A snapshot's manifest and the text of every object it is made of (its root first), by id. */
export interface ManifestObjects {
  manifest: Manifest;
  objects: Map<string, string>;
}

function checkVersion(version: unknown): number {
  const v = version ?? 1;
  if (typeof v !== 'number' || v > MANIFEST_VERSION) {
    throw new Error(`snapshot manifest version ${String(v)} is newer than this Keel reads (${MANIFEST_VERSION}); upgrade Keel`);
  }
  return v;
}

/**
 * Parse the text of a version 1 manifest (a whole flat list); throws on something that is not a
 * manifest, on a version 2 root (it needs its trees: use {@link readManifest}), or on a newer version.
 */
export function parseManifest(text: string): Manifest {
  const m = JSON.parse(text) as Partial<Manifest> & { trees?: unknown };
  if (!m || typeof m !== 'object') throw new Error('not a snapshot manifest');
  const version = checkVersion(m.version);
  if (Array.isArray(m.trees)) throw new Error('a version 2 snapshot manifest is a tree of objects: read it with readManifest');
  if (!Array.isArray(m.entries)) throw new Error('not a snapshot manifest');
  return { version, roots: m.roots ?? [], entries: m.entries };
}

function validName(name: unknown): name is string {
  return typeof name === 'string' && name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

/**
 * Snapshot `id`'s manifest, whatever its version, and the objects it is made of; undefined when the
 * root is missing. Throws naming the object when a tree it references is missing or malformed.
 */
export async function readManifest(source: ManifestSource, id: string): Promise<ManifestObjects | undefined> {
  const text = await source.getManifest(id);
  if (text === undefined) return undefined;
  const objects = new Map([[id, text]]);
  const root = JSON.parse(text) as { version?: unknown; roots?: string[]; trees?: Array<{ path: string; mode: number; tree: string }> };
  if (!Array.isArray(root?.trees)) return { manifest: parseManifest(text), objects };
  const version = checkVersion(root.version);
  const entries: ManifestEntry[] = [];
  const parsed = new Map<string, TreeEntry[]>();
  const tree = async (sha: string, path: string): Promise<TreeEntry[]> => {
    let kids = parsed.get(sha);
    if (kids) return kids;
    const body = await source.getManifest(sha);
    if (body === undefined) throw new Error(`snapshot ${id}: the tree of ${path} (${sha}) is not in the store`);
    const doc = JSON.parse(body) as { tree?: TreeEntry[] };
    if (!Array.isArray(doc?.tree)) throw new Error(`snapshot ${id}: ${sha} (${path}) is not a tree object`);
    kids = doc.tree;
    for (const k of kids) if (!validName(k?.name)) throw new Error(`snapshot ${id}: bad entry name ${JSON.stringify(k?.name)} in ${path}`);
    objects.set(sha, body);
    parsed.set(sha, kids);
    return kids;
  };
  // Depth first, a directory before what it holds; sorted by path at the end, as version 1 is.
  const stack: Array<[string, string]> = [];
  for (const r of root.trees) {
    entries.push({ path: r.path, type: 'dir', mode: r.mode });
    stack.push([r.path, r.tree]);
  }
  while (stack.length > 0) {
    const [dir, sha] = stack.pop()!;
    for (const k of await tree(sha, dir)) {
      const path = `${dir}/${k.name}`;
      if (k.type === 'dir') {
        entries.push({ path, type: 'dir', mode: k.mode });
        stack.push([path, k.tree]);
      } else if (k.type === 'file') entries.push({ path, type: 'file', mode: k.mode, size: k.size, sha: k.sha });
      else if (k.type === 'symlink') entries.push({ path, type: 'symlink', target: k.target });
      else throw new Error(`snapshot ${id}: unknown entry type in ${path}`);
    }
  }
  entries.sort(byPath);
  return { manifest: { version, roots: root.roots ?? [], entries }, objects };
}

/**
 * Add to `seen` the id of every object snapshot `id` is made of and the sha of every file it holds;
 * false when its root is not in the store. A tree already in `seen` was added whole before (with all it
 * holds), so it is not read again: marking many snapshots of one session reads each distinct tree once.
 * Throws naming the object when a tree it needs is missing or malformed.
 */
export async function addReferences(source: ManifestSource, id: string, seen: Set<string>): Promise<boolean> {
  if (seen.has(id)) return true;
  const text = await source.getManifest(id);
  if (text === undefined) return false;
  const root = JSON.parse(text) as { trees?: Array<{ path: string; tree: string }> };
  if (!Array.isArray(root?.trees)) {
    for (const e of parseManifest(text).entries) if (e.type === 'file') seen.add(e.sha);
    seen.add(id);
    return true;
  }
  // Added to `seen` only once the whole snapshot was read: a tree there always comes with all it holds.
  const found = new Set<string>();
  const stack: Array<[string, string]> = root.trees.map((r) => [r.path, r.tree]);
  while (stack.length > 0) {
    const [dir, sha] = stack.pop()!;
    if (seen.has(sha) || found.has(sha)) continue;
    const body = await source.getManifest(sha);
    if (body === undefined) throw new Error(`snapshot ${id}: the tree of ${dir} (${sha}) is not in the store`);
    const doc = JSON.parse(body) as { tree?: TreeEntry[] };
    if (!Array.isArray(doc?.tree)) throw new Error(`snapshot ${id}: ${sha} (${dir}) is not a tree object`);
    for (const k of doc.tree) {
      if (k.type === 'file') found.add(k.sha);
      else if (k.type === 'dir') stack.push([`${dir}/${k.name}`, k.tree]);
    }
    found.add(sha);
  }
  for (const sha of found) seen.add(sha);
  seen.add(id);
  return true;
}

export interface ManifestDiff {
  added: ManifestEntry[];
  removed: ManifestEntry[];
  modified: Array<{ before: ManifestEntry; after: ManifestEntry }>;
}

function same(a: ManifestEntry, b: ManifestEntry): boolean {
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
  out.added.sort(byPath);
  out.removed.sort(byPath);
  out.modified.sort((x, y) => byPath(x.after, y.after));
  return out;
}
