import { hostname } from 'node:os';
import { hostQueueFor } from '../../common/constants';
import { DEFAULT_OUTPUT_LIMIT, DEFAULT_SANDBOX_RUNTIME } from '../../common/defaults';
import { DEFAULT_DISK_DIR } from '../../host/disks';
import type { EgressSettings } from '../../host/egress';
import { defaultImageTag } from '../../host/image';

/** How a sandbox-host worker runs sandboxes. Built by {@link resolveSandboxConfig}; activities never read `process.env`. */
export interface SandboxConfig {
  /**
   * Names this Docker host in handles and container labels (`keel.host`).
   * @default os.hostname()
   */
  hostId: string;
  /**
   * The task queue this host's worker polls; returned in every handle so later sandbox activities of a session come back here.
   * @default hostQueueFor(hostId), i.e. `keel-sandbox-<hostId>`
   */
  hostQueue: string;
  /**
   * Image used when a session's `SandboxSpec` names none.
   * @default defaultImageTag(), i.e. `keel-sandbox:<recipe hash>`
   */
  defaultImage: string;
  /**
   * Docker runtime for sessions whose `SandboxSpec` names none (`runsc` for gVisor, once dockerd registered it).
   * @default DEFAULT_SANDBOX_RUNTIME ('runc')
   */
  defaultRuntime: string;
  /**
   * Where each sandbox's /workspace filesystem (a loop-mounted ext4 image of `SandboxSpec.diskMb`) is made; needs root
   * on the Docker host. `null`: /workspace is a plain Docker volume with no quota. @default DEFAULT_DISK_DIR ('/var/lib/keel/disks')
   */
  diskDir: string | null;
  /**
   * Most characters of tool output the model sees per call; the executor keeps 40% head and 60% tail and says how much it cut.
   * @default DEFAULT_OUTPUT_LIMIT (16000)
   */
  outputLimit: number;
  /**
   * What this host's egress proxies add for networked sessions: credentials per host, and (tests only)
   * names pinned to addresses. See `host/egress.ts`.
   * @default no headers, no pinned names
   */
  egress: EgressSettings;
}

/** Fill every unset field of a {@link SandboxConfig} with its default. */
export function resolveSandboxConfig(partial: Partial<SandboxConfig> = {}): SandboxConfig {
  const hostId = partial.hostId ?? hostname();
  return {
    hostId,
    hostQueue: partial.hostQueue ?? hostQueueFor(hostId),
    defaultImage: partial.defaultImage ?? defaultImageTag(),
    defaultRuntime: partial.defaultRuntime ?? DEFAULT_SANDBOX_RUNTIME,
    diskDir: partial.diskDir === undefined ? DEFAULT_DISK_DIR : partial.diskDir,
    outputLimit: partial.outputLimit ?? DEFAULT_OUTPUT_LIMIT,
    egress: partial.egress ?? { headers: {}, resolve: {} },
  };
}
