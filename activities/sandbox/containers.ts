/**
 * Sandbox containers and workspace volumes as Docker objects: names, labels,
 * the locked-down create options, lookup, removal and orphan reaping.
 */
import { createHash } from 'node:crypto';
import type Docker from 'dockerode';
import type { SandboxSpec } from '../../common/types';
import { SPEC_DEFAULTS } from './config';
import { statusOf } from './errors';

export const LABEL_MANAGED = 'keel.managed';
export const LABEL_SESSION = 'keel.session';
export const LABEL_HOST = 'keel.host';
/** Which of a session's containers this is: 1 at first, +1 per restore. Absent on containers made before generations (read as 1). */
export const LABEL_GENERATION = 'keel.generation';

/** Docker names allow `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; anything else is replaced, and a hash keeps altered ids distinct. */
export function safeName(sessionId: string): string {
  const cleaned = sessionId.replace(/[^a-zA-Z0-9_.-]/g, '-').replace(/^[^a-zA-Z0-9]+/, '').slice(0, 100);
  if (cleaned === sessionId && cleaned.length > 0) return cleaned;
  const hash = createHash('sha256').update(sessionId).digest('hex').slice(0, 8);
  return cleaned ? `${cleaned}-${hash}` : hash;
}

/** Generation 1 keeps the names Keel used before generations; later ones add `-g<n>`. */
function generationSuffix(generation: number): string {
  return generation === 1 ? '' : `-g${generation}`;
}

export function containerName(sessionId: string, generation = 1): string {
  return `keel-${safeName(sessionId)}${generationSuffix(generation)}`;
}

export function volumeName(sessionId: string, generation = 1): string {
  return `keel-ws-${safeName(sessionId)}${generationSuffix(generation)}`;
}

export function sessionLabels(sessionId: string, hostId: string, generation = 1): Record<string, string> {
  return { [LABEL_MANAGED]: 'true', [LABEL_SESSION]: sessionId, [LABEL_HOST]: hostId, [LABEL_GENERATION]: String(generation) };
}

/** The generation a label set names; 1 when it names none. */
export function generationOf(labels: Record<string, string> | undefined): number {
  const n = Number(labels?.[LABEL_GENERATION] ?? '1');
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

/**
 * The container a session's tools run in: no network, no capabilities, no
 * privilege gain, read-only root, uid 1000, bounded memory/CPU/pids, writable
 * only in /workspace (a named volume) and two size-limited tmpfs.
 */
export function createOptions(args: { sessionId: string; hostId: string; image: string; spec?: SandboxSpec; generation?: number }): Docker.ContainerCreateOptions {
  const { sessionId, hostId, image, spec } = args;
  const generation = args.generation ?? 1;
  const memoryMb = spec?.memoryMb ?? SPEC_DEFAULTS.memoryMb;
  const cpus = spec?.cpus ?? SPEC_DEFAULTS.cpus;
  const pidsLimit = spec?.pidsLimit ?? SPEC_DEFAULTS.pidsLimit;
  return {
    name: containerName(sessionId, generation),
    Image: image,
    Labels: sessionLabels(sessionId, hostId, generation),
    User: '1000:1000',
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
      NetworkMode: 'none',
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges'],
      ReadonlyRootfs: true,
      Init: true,
      Memory: memoryMb * 1024 * 1024,
      MemorySwap: memoryMb * 1024 * 1024,
      NanoCpus: Math.round(cpus * 1e9),
      PidsLimit: pidsLimit,
      Tmpfs: {
        '/tmp': 'rw,nosuid,nodev,size=256m,mode=1777',
        '/home/keel': 'rw,nosuid,nodev,size=64m,uid=1000,gid=1000,mode=0755',
      },
      // A named volume, never a host path: a fresh one copies the image's
      // /workspace (owned by uid 1000), so the keel user can write it.
      Mounts: [{ Type: 'volume', Source: volumeName(sessionId, generation), Target: '/workspace', ReadOnly: false }],
      LogConfig: { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '1' } },
      RestartPolicy: { Name: 'no' },
    },
  };
}

/** Create the workspace volume of a session's generation if it does not exist (Docker returns the existing one). */
export async function ensureVolume(docker: Docker, sessionId: string, hostId: string, generation = 1): Promise<void> {
  await docker.createVolume({ Name: volumeName(sessionId, generation), Labels: sessionLabels(sessionId, hostId, generation) });
}

/** A managed container as listed by Docker. */
export interface ManagedContainer {
  id: string;
  name: string;
  sessionId: string;
  hostId: string;
  generation: number;
  image: string;
  /** Docker's state: `created`, `running`, `exited`, ... */
  state: string;
}

function toManaged(c: Docker.ContainerInfo): ManagedContainer {
  return {
    id: c.Id,
    name: (c.Names[0] ?? '').replace(/^\//, ''),
    sessionId: c.Labels[LABEL_SESSION] ?? '',
    hostId: c.Labels[LABEL_HOST] ?? '',
    generation: generationOf(c.Labels),
    image: c.Image,
    state: c.State,
  };
}

/** Every Keel sandbox container on this Docker host, running or not. */
export async function listManagedContainers(docker: Docker): Promise<ManagedContainer[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABEL_MANAGED}=true`] } });
  return list.map(toManaged);
}

/** The containers of one session, all generations (normally zero or one). */
export async function sessionContainers(docker: Docker, sessionId: string): Promise<ManagedContainer[]> {
  const list = await docker.listContainers({
    all: true,
    filters: { label: [`${LABEL_MANAGED}=true`, `${LABEL_SESSION}=${sessionId}`] },
  });
  return list.map(toManaged);
}

async function ignore404<T>(p: Promise<T>): Promise<boolean> {
  try {
    await p;
    return true;
  } catch (err) {
    if (statusOf(err) === 404) return false;
    throw err;
  }
}

/**
 * Remove a session's containers and workspace volumes: all generations, or with
 * `belowGeneration` only the older ones. Idempotent; true when anything was removed.
 */
export async function removeSession(
  docker: Docker,
  sessionId: string,
  onContainer: (id: string) => void = () => {},
  belowGeneration?: number,
): Promise<boolean> {
  const doomed = (generation: number): boolean => belowGeneration === undefined || generation < belowGeneration;
  let removed = false;
  for (const c of await sessionContainers(docker, sessionId)) {
    if (!doomed(c.generation)) continue;
    onContainer(c.id);
    removed = (await ignore404(docker.getContainer(c.id).remove({ force: true, v: true }))) || removed;
  }
  const { Volumes } = await docker.listVolumes({ filters: { label: [`${LABEL_MANAGED}=true`, `${LABEL_SESSION}=${sessionId}`] } });
  const names = new Set((Volumes ?? []).filter((v) => doomed(generationOf(v.Labels))).map((v) => v.Name));
  if (doomed(1)) names.add(volumeName(sessionId));
  for (const name of names) removed = (await ignore404(docker.getVolume(name).remove())) || removed;
  return removed;
}

/**
 * Remove containers and workspace volumes of sessions that are no longer live
 * (e.g. a worker died between provisioning and teardown). Returns the session ids reaped.
 */
export async function reapOrphans(
  docker: Docker,
  isLive: (sessionId: string) => Promise<boolean>,
  onContainer?: (id: string) => void,
): Promise<string[]> {
  const sessions = new Set<string>();
  for (const c of await listManagedContainers(docker)) if (c.sessionId) sessions.add(c.sessionId);
  const { Volumes } = await docker.listVolumes({ filters: { label: [`${LABEL_MANAGED}=true`] } });
  for (const v of Volumes ?? []) {
    const id = v.Labels?.[LABEL_SESSION];
    if (id) sessions.add(id);
  }
  const reaped: string[] = [];
  for (const sessionId of sessions) {
    if (await isLive(sessionId)) continue;
    await removeSession(docker, sessionId, onContainer);
    reaped.push(sessionId);
  }
  return reaped;
}
