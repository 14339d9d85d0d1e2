/**
 * Work in and out of a session: seeding /workspace from a directory, tar or git
 * repository before the first step (as the session's first snapshot), and reading
 * it back from the snapshots after any step. Node-side code (fs, git); used by the
 * CLI and `keel/client/workspace`.
 */
export { describeSource, prepareWorkspace, extractTar, type PrepareOptions, type SeedSource } from './sources';
export { storeDirectory, WorkspaceError, type SeedSnapshot } from './tree';
export { workspaceAt, workspaceGitDiff, writeWorkspaceDir, writeWorkspaceTar, type WorkspacePoint } from './export';
