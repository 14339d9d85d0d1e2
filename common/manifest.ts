/**
 * Snapshot manifests: the canonical list of a sandbox's writable files that a
 * snapshot id is the sha256 of (the executor writes them; see sandbox/), and the
 * difference between two of them. Pure code: the CLI, the API and audit read them.
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

/** The newest manifest format this code reads. */
export const MANIFEST_VERSION = 1;

/** Parse manifest text; throws on something that is not a manifest or is newer than this code. */
export function parseManifest(text: string): Manifest {
  const m = JSON.parse(text) as Partial<Manifest>;
  if (!m || typeof m !== 'object' || !Array.isArray(m.entries)) throw new Error('not a snapshot manifest');
  const version = m.version ?? 1;
  if (typeof version !== 'number' || version > MANIFEST_VERSION) {
    throw new Error(`snapshot manifest version ${String(version)} is newer than this Keel reads (${MANIFEST_VERSION}); upgrade Keel`);
  }
  return { version, roots: m.roots ?? [], entries: m.entries };
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

const byPath = (x: { path: string }, y: { path: string }): number => (x.path < y.path ? -1 : x.path > y.path ? 1 : 0);

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
