/**
 * Seeding a session's /workspace from a program (`keel/client/workspace`): store a
 * directory, a tar file or a git repository in the blob store the sandbox hosts
 * read, then name it in the spec. A separate entry from `keel/client`: it reads
 * files and runs `git`, which a client that only starts sessions does not need.
 *
 * ```ts
 * import { KeelClient } from 'keel/client';
 * import { DirBlobStore, uploadWorkspace } from 'keel/client/workspace';
 * const workspace = await uploadWorkspace('./my-repo', new DirBlobStore('/shared/keel-blobs'), { ref: 'main' });
 * await keel.start({ task: 'fix the failing test', model, workspace });
 * ```
 */
import type { BlobStore } from '../blobs/store';
import type { WorkspaceSeed } from '../common/types';
import { describeSource, prepareWorkspace, type PrepareOptions } from '../workspace/sources';

export { DirBlobStore } from '../blobs/dir-store';
export type { BlobStore } from '../blobs/store';
export type { WorkspaceSeed } from '../common/types';
export { prepareWorkspace, type PrepareOptions, type SeedSource } from '../workspace/sources';
export { WorkspaceError, type SeedSnapshot } from '../workspace/tree';

/**
 * Store `path` (a directory, a `.tar`/`.tar.gz`/`.tgz` file, or a git repository at `opts.ref`,
 * default HEAD, history included) in `blobs` and return what `SessionSpec.workspace` takes.
 * Throws `WorkspaceError` for a missing path, an unknown ref, a tar entry outside the archive
 * or a symlink pointing out.
 */
export async function uploadWorkspace(path: string, blobs: BlobStore, opts: PrepareOptions = {}): Promise<WorkspaceSeed & { source: string }> {
  const seed = await prepareWorkspace(path, blobs, opts);
  return { snapshot: seed.snapshot, files: seed.files, bytes: seed.bytes, uploadedBytes: seed.uploadedBytes, source: describeSource(seed.source) };
}
