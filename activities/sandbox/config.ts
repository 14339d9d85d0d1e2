import { hostname } from 'node:os';
import { join } from 'node:path';
import { defaultImageTag, repoRoot } from './image';

/** How a sandbox-host worker runs sandboxes. Built by {@link resolveSandboxConfig}; activities never read `process.env`. */
export interface SandboxConfig {
  /**
   * Names this Docker host in handles and container labels (`keel.host`).
   * @default os.hostname()
   */
  hostId: string;
  /**
   * The task queue this host's worker polls; returned in every handle so later sandbox activities of a session come back here.
   * @default `keel-sandbox-${hostId}`
   */
  hostQueue: string;
  /**
   * Image used when a session's `SandboxSpec` names none.
   * @default defaultImageTag(), i.e. `keel-sandbox:<recipe hash>`
   */
  defaultImage: string;
  /**
   * Most characters of tool output the model sees per call; the executor keeps 40% head and 60% tail and says how much it cut.
   * @default 16000
   */
  outputLimit: number;
  /**
   * Shell timeout when a call gives none, in seconds.
   * @default 120
   */
  defaultTimeoutSec: number;
  /**
   * Directory of the blob store that holds snapshots (file contents and manifests), on the worker
   * machine, never inside a container. Every host that may restore a session must see the same store.
   * Left unset by {@link resolveSandboxConfig} (so resolved configs compare equal to older ones);
   * read through {@link blobDirOf}.
   * @default `<project>/.keel/blobs`
   */
  blobDir?: string;
  /**
   * Warm pool: how many started, idle, locked-down containers (default spec and image) this worker keeps
   * ready, so provisioning claims one instead of creating one. Refilled in the background, one at a time;
   * a claimed container serves one session and is never returned. 0 turns the pool off. Off by default:
   * a pool is running containers a process owns, so only a long-lived sandbox worker that closes its
   * runtime at shutdown should ask for one.
   * @default 0
   */
  poolSize: number;
}

/** The blob directory a config names, or its default `<project>/.keel/blobs`. */
export function blobDirOf(config: Pick<SandboxConfig, 'blobDir'>): string {
  return config.blobDir ?? join(repoRoot(), '.keel', 'blobs');
}

/** Fill every unset field of a {@link SandboxConfig} with its default. */
export function resolveSandboxConfig(partial: Partial<SandboxConfig> = {}): SandboxConfig {
  const hostId = partial.hostId ?? hostname();
  return {
    hostId,
    hostQueue: partial.hostQueue ?? `keel-sandbox-${hostId}`,
    defaultImage: partial.defaultImage ?? defaultImageTag(),
    outputLimit: partial.outputLimit ?? 16000,
    defaultTimeoutSec: partial.defaultTimeoutSec ?? 120,
    poolSize: partial.poolSize ?? 0,
    ...(partial.blobDir ? { blobDir: partial.blobDir } : {}),
  };
}

/** Resource defaults applied to a `SandboxSpec`. */
export const SPEC_DEFAULTS = { memoryMb: 1024, cpus: 1, pidsLimit: 256 } as const;
