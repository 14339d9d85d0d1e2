/** Sandbox activities and the pieces a sandbox-host worker wires them from. */
export { createSandboxActivities, type SandboxActivities, type SandboxActivityDeps } from './activities';
export { resolveSandboxConfig, type SandboxConfig } from './config';
export { SandboxRuntime } from './runtime';
export { ExecutorClient, ExecutorGoneError, ExecutorTimeoutError, type ExecutorResponse, type RequestOptions } from './executor-client';
export { defaultImageTag, ensureImage, imageExists, recipeHash, sandboxDir } from './image';
export { listManagedContainers, reapOrphans, type ManagedContainer } from './containers';
export { SandboxFailure } from './errors';
