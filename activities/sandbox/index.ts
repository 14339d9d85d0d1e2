/** Sandbox activities and the pieces a sandbox-host worker wires them from. */
export { createSandboxActivities, type SandboxActivities, type SandboxActivityDeps } from './activities';
export { blobDirOf, resolveSandboxConfig, type SandboxConfig } from './config';
export { SandboxRuntime } from './runtime';
export { ExecutorClient, ExecutorGoneError, ExecutorTimeoutError, type ExecutorResponse, type RequestOptions } from './executor-client';
export { defaultImageTag, ensureImage, imageExists, recipeHash, sandboxDir } from './image';
export { LABEL_CLAIM, LABEL_POOL, listManagedContainers, reapOrphans, reapStoppedPool, type ManagedContainer } from './containers';
export { LEASE_SEC, WarmPool, type WarmPoolOptions } from './pool';
export { SandboxFailure } from './errors';
export {
  parseManifest,
  restoreSnapshot,
  takeSnapshot,
  SnapshotMissingError,
  type ExecutorSnapshot,
  type Manifest,
  type ManifestEntry,
  type RestoreOutcome,
  type SnapshotOutcome,
} from './snapshots';
