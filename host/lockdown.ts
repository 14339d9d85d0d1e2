/**
 * The security settings of every sandbox container, in one file a reviewer can
 * read on its own. A session's commands are hostile by assumption: the container
 * gets no network, no privilege gain, a read-only root, bounded memory, CPU and
 * pids, and is writable only in /workspace (a named volume, never a host path a session names; with the disk
 * quota, one bound to the sandbox's own loop-mounted filesystem, see disks.ts)
 * and size-limited tmpfs. Warm-pool containers get exactly the same settings.
 *
 * Privilege split: the executor (PID 1) starts as root with only {@link EXECUTOR_CAPS};
 * at start it empties its bounding set, drops CAP_SETPCAP and keeps CAP_SETUID and
 * CAP_SETGID (sandbox/keel_executor/privileges.py). Every command runs as uid/gid
 * 1000 with no groups and no capabilities, so it cannot signal, trace or read the
 * executor, and the executor's state lives in a root-only tmpfs ({@link EXECUTOR_STATE_DIR}).
 *
 * Network: none, unless the session lists destinations. Then the container is on an internal network of
 * its own whose only other member is the session's egress proxy ({@link proxyOptions}): HTTP_PROXY and
 * HTTPS_PROXY name it (the only name the sandbox can resolve), and there is no route anywhere else (not even to the Docker host: see `egress.ts`).
 */
import type Docker from 'dockerode';
import { DEFAULT_SANDBOX_RUNTIME, SANDBOX_DEFAULTS } from '../common/defaults';
import type { SandboxSpec } from '../common/types';
import { containerName, poolLabels, poolNames, sessionLabels, volumeName } from './labels';

/**
 * The only capabilities the container gets, all for the executor: SETUID and SETGID to start commands as
 * uid 1000 and to do its file work with that file identity (setfsuid), SETPCAP to empty the bounding set
 * at start (then dropped). Commands end up with none.
 */
export const EXECUTOR_CAPS = ['SETUID', 'SETGID', 'SETPCAP'] as const;
/** The executor's own state (trace of keyed calls, restore marker, pool claim): root's, 0700, out of commands' reach. */
export const EXECUTOR_STATE_DIR = '/run/keel';

/**
 * Size of /dev/shm, which Docker mounts writable even on a read-only root. It is scratch: snapshots hold
 * /workspace (and the shell's state), never /dev/shm, and its pages count against the memory limit.
 */
export const SHM_BYTES = 64 * 1024 * 1024;

/**
 * The host pids limit of a gVisor container whose sandbox may run `pidsLimit` processes. Under runsc the
 * container's pids cgroup holds gVisor's kernel (the Sentry, tens of Go threads) and, with its ptrace
 * platform, host stub processes and threads for every sandbox address space and thread; when that cgroup is
 * full the Sentry panics and the container is lost. The sandbox's own limit is RLIMIT_NPROC (`--nproc`,
 * below). Measured here (Debian runsc 20221219, ptrace) with fork bombs held at it: the host pids grow with use
 * and are not given back (the stubs are pooled): one bomb, about 15 per sandbox task; a bomb left running, a
 * second bomb and a process that holds the limit full, one after the other: 1,482 for 64 tasks, 3,134 for 128
 * (about 24 per task). So 32 per task and 512 for the Sentry: a sandbox at the default limit of 256 may take
 * 8,704 host pids. Size the host's pid_max (kernel.pid_max) for the gVisor sandboxes it runs, or give them a
 * lower pidsLimit.
 */
export function gvisorHostPids(pidsLimit: number): number {
  return pidsLimit * 32 + 512;
}

/**
 * The Docker runtime registered for networked gVisor sessions (scripts/setup.sh): runsc without `--network=none`,
 * with `--network=host`, which inside a container means the container's own network namespace (here the
 * session's internal network, whose only other member is its egress proxy). The Debian runsc cannot start its
 * own network stack (`--network=sandbox`) on this kernel ("cannot run with network enabled in root network
 * namespace"), so gVisor passes a networked sandbox's socket calls to the host kernel, in that namespace.
 */
export const GVISOR_NET_RUNTIME = 'runsc-net';

/** Whether a Docker runtime is gVisor's (runsc, or its networked registration). */
export function isGvisor(runtime: string): boolean {
  return runtime === 'runsc' || runtime === GVISOR_NET_RUNTIME;
}

/**
 * The Docker runtime a sandbox runs under: `runtime` (the session's or the worker's choice), except that a
 * networked gVisor sandbox needs the registration that has a network ({@link GVISOR_NET_RUNTIME}); plain runsc
 * has `--network=none`, so a session without network stays there.
 */
export function dockerRuntime(runtime: string, networked: boolean): string {
  return networked && runtime === 'runsc' ? GVISOR_NET_RUNTIME : runtime;
}

/** How the executor (the container's PID 1) is started; the warm pool adds `--pool-lease <sec>`. */
export const EXECUTOR_COMMAND = ['python3', '-u', '/opt/keel/executor.py'] as const;

/**
 * The executor's arguments for a sandbox under `runtime` that may run `pidsLimit` processes. gVisor puts no
 * pids cgroup inside the sandbox (the container's, on the host, holds gVisor's own threads: see
 * {@link gvisorHostPids}), so a fork bomb there grew until the host limit stopped the Sentry and the container
 * was lost. Under gVisor the executor therefore sets RLIMIT_NPROC to the limit (`--nproc`), which gVisor's
 * kernel enforces for the commands' uid.
 */
function executorCommand(runtime: string, pidsLimit: number, extra: string[] = []): string[] {
  return [...EXECUTOR_COMMAND, ...extra, ...(isGvisor(runtime) ? ['--nproc', String(pidsLimit)] : [])];
}

/** The port the egress proxy listens on, on the session's network. */
export const EGRESS_PROXY_PORT = 3128;
/**
 * The proxy's name on the session's network (a Docker alias). The sandbox's environment names it rather than
 * its address: the shell saves exported variables with the snapshot, and a restored sandbox gets a new network.
 */
export const EGRESS_PROXY_HOST = 'egress-proxy';

/** Where a networked sandbox goes out: its own network, where the proxy answers as {@link EGRESS_PROXY_HOST}. */
export interface EgressAttachment {
  network: string;
}

/**
 * Create options for generation `generation` of a session's container; `egress` for a networked session.
 * Its Docker runtime is the spec's, else `runtime` (the worker's `KEEL_SANDBOX_RUNTIME`), else runc.
 */
export function createOptions(args: {
  sessionId: string;
  hostId: string;
  image: string;
  spec?: SandboxSpec;
  generation?: number;
  runtime?: string;
  egress?: EgressAttachment;
}): Docker.ContainerCreateOptions {
  const { sessionId, hostId, image, spec, egress } = args;
  const generation = args.generation ?? 1;
  const runtime = dockerRuntime(spec?.runtime ?? args.runtime ?? DEFAULT_SANDBOX_RUNTIME, egress !== undefined);
  const options = lockedDown({
    name: containerName(sessionId, generation),
    labels: sessionLabels(sessionId, hostId, generation),
    volume: volumeName(sessionId, generation),
    image,
    spec,
    runtime,
    command: executorCommand(runtime, spec?.pidsLimit ?? SANDBOX_DEFAULTS.pidsLimit),
  });
  if (!egress) return options;
  const proxy = `http://${EGRESS_PROXY_HOST}:${EGRESS_PROXY_PORT}`;
  return {
    ...options,
    NetworkDisabled: false,
    // Curl, pip, git, npm and Python's urllib read one spelling or the other.
    Env: ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'].map((name) => `${name}=${proxy}`),
    HostConfig: { ...options.HostConfig, NetworkMode: egress.network },
  };
}

/**
 * A session's egress proxy (sandbox/egress_proxy.py, from the sandbox image): Keel's code, but it parses
 * what hostile commands send, so it is locked down too: nobody's uid, no capabilities, read-only root, small
 * limits. It starts on the shared egress network; `egress.ts` connects it to the session's network.
 */
export function proxyOptions(args: { name: string; labels: Record<string, string>; image: string; network: string }): Docker.ContainerCreateOptions {
  return {
    name: args.name,
    Image: args.image,
    Cmd: ['python3', '-u', '/opt/keel/egress_proxy.py'],
    Labels: args.labels,
    User: '65534:65534',
    WorkingDir: '/',
    // Driven like the executor: JSON lines on stdin/stdout (its configuration, with credentials, comes
    // this way, never through Env or Cmd, which `docker inspect` shows).
    OpenStdin: true,
    StdinOnce: false,
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
    HostConfig: {
      NetworkMode: args.network,
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      ReadonlyRootfs: true,
      Memory: 128 * 1024 * 1024,
      MemorySwap: 128 * 1024 * 1024,
      NanoCpus: 0.5e9,
      PidsLimit: 64,
      LogConfig: { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '1' } },
      RestartPolicy: { Name: 'no' },
    },
  };
}

/**
 * A warm-pool container: exactly the lockdown of {@link createOptions} with the default spec, no session
 * labels, and an executor that exits unless its lease is renewed or it is claimed.
 */
export function poolOptions(args: { token: string; hostId: string; image: string; runtime?: string; leaseSec: number }): Docker.ContainerCreateOptions {
  const names = poolNames(args.token);
  const runtime = args.runtime ?? DEFAULT_SANDBOX_RUNTIME;
  return lockedDown({
    name: names.container,
    labels: poolLabels(args.hostId, names.volume),
    volume: names.volume,
    image: args.image,
    runtime,
    command: executorCommand(runtime, SANDBOX_DEFAULTS.pidsLimit, ['--pool-lease', String(args.leaseSec)]),
  });
}

function lockedDown(args: {
  name: string;
  labels: Record<string, string>;
  volume: string;
  image: string;
  spec?: SandboxSpec;
  runtime: string;
  command: string[];
}): Docker.ContainerCreateOptions {
  const { spec } = args;
  const memoryMb = spec?.memoryMb ?? SANDBOX_DEFAULTS.memoryMb;
  const cpus = spec?.cpus ?? SANDBOX_DEFAULTS.cpus;
  const pidsLimit = spec?.pidsLimit ?? SANDBOX_DEFAULTS.pidsLimit;
  return {
    name: args.name,
    Image: args.image,
    Cmd: args.command,
    Labels: args.labels,
    // Root for the executor only: it starts every command as 1000:1000 (see EXECUTOR_CAPS).
    User: '0:0',
    WorkingDir: '/workspace',
    NetworkDisabled: true,
    // The executor speaks JSON lines on stdin/stdout. StdinOnce=false keeps stdin
    // open when an attached client goes away, so a later attach reaches the same executor.
    OpenStdin: true,
    StdinOnce: false,
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
    HostConfig: {
      Runtime: args.runtime,
      NetworkMode: 'none',
      CapDrop: ['ALL'],
      CapAdd: [...EXECUTOR_CAPS],
      SecurityOpt: ['no-new-privileges'],
      ReadonlyRootfs: true,
      // The executor is PID 1 itself (it reaps orphans): an init process would hold the
      // protocol's stdin and stdout where any command could open them via /proc/1/fd.
      Init: false,
      Memory: memoryMb * 1024 * 1024,
      MemorySwap: memoryMb * 1024 * 1024,
      NanoCpus: Math.round(cpus * 1e9),
      PidsLimit: isGvisor(args.runtime) ? gvisorHostPids(pidsLimit) : pidsLimit,
      ShmSize: SHM_BYTES,
      Tmpfs: {
        '/tmp': 'rw,nosuid,nodev,size=256m,mode=1777',
        '/home/keel': 'rw,nosuid,nodev,size=64m,uid=1000,gid=1000,mode=0755',
        [EXECUTOR_STATE_DIR]: 'rw,noexec,nosuid,nodev,size=16m,uid=0,gid=0,mode=0700',
      },
      // A named volume: a fresh one copies the image's /workspace (owned by uid 1000), so the keel user can
      // write it. With a disk quota the volume binds a filesystem of its own (disks.ts).
      Mounts: [{ Type: 'volume', Source: args.volume, Target: '/workspace', ReadOnly: false }],
      LogConfig: { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '1' } },
      RestartPolicy: { Name: 'no' },
    },
  };
}
