/**
 * The sandbox-host library: what a Docker host does for Keel. Containers and
 * their lockdown, the executor protocol client, the warm pool, snapshot
 * transfer, images and reaping. Used by the sandbox activities, the workers
 * and the CLI; knows nothing of Temporal.
 */
export { claimContainer, NameTakenError, startAttached, waitReady, type Ping } from './bring-up';
export { ignore404, isDockerUnreachable, statusOf } from './docker-errors';
export { Egress, EGRESS_NETWORK, egressSessions, ensureEgressNetwork, removeEgress, type EgressSettings } from './egress';
export { ExecutorClient, ExecutorGoneError, ExecutorTimeoutError, type ExecutorResponse, type RequestOptions } from './executor-client';
export { defaultImageTag, ensureImage, imageExists, recipeFiles, recipeHash } from './image';
export { listManagedContainers, removeSession, sessionContainers, type ManagedContainer } from './inventory';
export { claimVolumeName, containerName, egressNames, LABEL_CLAIM, LABEL_POOL, safeName, volumeName } from './labels';
export { createOptions, dockerRuntime, EGRESS_PROXY_HOST, EGRESS_PROXY_PORT, EXECUTOR_COMMAND, GVISOR_NET_RUNTIME, isGvisor, poolOptions, proxyOptions, SHM_BYTES, type EgressAttachment } from './lockdown';
export { DEFAULT_DISK_DIR, diskPaths, DiskError, ensureDisk, LABEL_DISK, listDisks, removeDisk } from './disks';
export { keelRoot, sandboxDir } from './paths';
export { LEASE_SEC, WarmPool, type WarmPoolOptions } from './pool';
export { describePools, imageKey, planPools, type PlannedPool, type PoolImage } from './pool-images';
export { poolImageProblems } from './custom-image';
export { reapDisks, reapOrphans, reapStoppedPool, type ReapOptions } from './reap';
export { GVISOR_RUNTIMES, knownRuntimes, RuntimeCheck, runtimeArgs, runtimeFix } from './runtimes';
export { SandboxRuntime } from './runtime';
export { restoreSnapshot, SnapshotMissingError, takeSnapshot, type ExecutorSnapshot, type RestoreOutcome, type SnapshotOutcome } from './snapshots';
