import { hostname } from 'node:os';
import { defaultImageTag } from './image';

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
  };
}

/** Resource defaults applied to a `SandboxSpec`. */
export const SPEC_DEFAULTS = { memoryMb: 1024, cpus: 1, pidsLimit: 256 } as const;
