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
/**
 * On warm-pool containers and their workspace volumes: the host id. Docker labels cannot change after
 * create, so a pool container never carries `keel.session`; a claim record (below) says whose it is.
 */
export const LABEL_POOL = 'keel.pool';
/** On a pool container: the name of its workspace volume (removed with it). */
export const LABEL_VOLUME = 'keel.volume';
/**
 * On a claim record: the id of the pool container it gives to a session. A claim record is an empty
 * Docker volume `keel-claim-<container id>` labelled like a session's volume (`keel.managed`,
 * `keel.session`, `keel.host`, `keel.generation`), so every label lookup of a session's objects sees it.
 */
export const LABEL_CLAIM = 'keel.claim';

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
  return lockedDown({
    name: containerName(sessionId, generation),
    labels: sessionLabels(sessionId, hostId, generation),
    volume: volumeName(sessionId, generation),
    image,
    spec,
  });
}

/** Pool container and volume names: `keel-pool-<token>`, `keel-ws-pool-<token>`. */
export function poolNames(token: string): { container: string; volume: string } {
  return { container: `keel-pool-${token}`, volume: `keel-ws-pool-${token}` };
}

/** Labels of a pool container (and, without `keel.volume`, of its workspace volume). */
export function poolLabels(hostId: string, volume?: string): Record<string, string> {
  return { [LABEL_MANAGED]: 'true', [LABEL_HOST]: hostId, [LABEL_POOL]: hostId, ...(volume ? { [LABEL_VOLUME]: volume } : {}) };
}

/**
 * A warm-pool container: exactly the lockdown of {@link createOptions} with the default spec, no session
 * labels, and an executor that exits unless its lease is renewed or it is claimed (sandbox/executor.py).
 */
export function poolOptions(args: { token: string; hostId: string; image: string; leaseSec: number }): Docker.ContainerCreateOptions {
  const names = poolNames(args.token);
  return {
    ...lockedDown({ name: names.container, labels: poolLabels(args.hostId, names.volume), volume: names.volume, image: args.image }),
    Cmd: ['python3', '-u', '/opt/keel/executor.py', '--pool-lease', String(args.leaseSec)],
  };
}

function lockedDown(args: { name: string; labels: Record<string, string>; volume: string; image: string; spec?: SandboxSpec }): Docker.ContainerCreateOptions {
  const { spec } = args;
  const memoryMb = spec?.memoryMb ?? SPEC_DEFAULTS.memoryMb;
  const cpus = spec?.cpus ?? SPEC_DEFAULTS.cpus;
  const pidsLimit = spec?.pidsLimit ?? SPEC_DEFAULTS.pidsLimit;
  return {
    name: args.name,
    Image: args.image,
    Labels: args.labels,
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
      // The executor is PID 1 itself (it reaps orphans): an init process would hold the
      // protocol's stdin and stdout where any command could open them via /proc/1/fd.
      Init: false,
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
      Mounts: [{ Type: 'volume', Source: args.volume, Target: '/workspace', ReadOnly: false }],
      LogConfig: { Type: 'json-file', Config: { 'max-size': '1m', 'max-file': '1' } },
      RestartPolicy: { Name: 'no' },
    },
  };
}

/** Create the workspace volume of a session's generation if it does not exist (Docker returns the existing one). */
export async function ensureVolume(docker: Docker, sessionId: string, hostId: string, generation = 1): Promise<void> {
  await docker.createVolume({ Name: volumeName(sessionId, generation), Labels: sessionLabels(sessionId, hostId, generation) });
}

/** Create a pool container's workspace volume; returns its name. */
export async function ensurePoolVolume(docker: Docker, token: string, hostId: string): Promise<string> {
  const { volume } = poolNames(token);
  await docker.createVolume({ Name: volume, Labels: poolLabels(hostId) });
  return volume;
}

/** The session and generation a container serves: its labels, or for a pool container its claim record. */
export async function ownerOf(docker: Docker, info: Docker.ContainerInspectInfo): Promise<{ sessionId?: string; generation: number }> {
  let labels = info.Config.Labels ?? {};
  if (labels[LABEL_SESSION] === undefined && labels[LABEL_POOL] !== undefined) {
    try {
      labels = (await docker.getVolume(claimVolumeName(info.Id)).inspect()).Labels ?? {};
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }
  return { sessionId: labels[LABEL_SESSION], generation: generationOf(labels) };
}

/** A managed container as listed by Docker. */
export interface ManagedContainer {
  id: string;
  name: string;
  /** The session it serves; '' for an unclaimed pool container. */
  sessionId: string;
  hostId: string;
  generation: number;
  image: string;
  /** Docker's state: `created`, `running`, `exited`, ... */
  state: string;
  /** Creation time, seconds since the epoch; for a claimed pool container, the time of the claim. */
  created: number;
  /** Set on warm-pool containers (claimed or not): the workspace volume to remove with it. */
  poolVolume?: string;
}

function toManaged(c: Docker.ContainerInfo, claim?: Claim): ManagedContainer {
  const labels = claim?.labels ?? c.Labels;
  return {
    id: c.Id,
    name: (c.Names[0] ?? '').replace(/^\//, ''),
    sessionId: labels[LABEL_SESSION] ?? '',
    hostId: c.Labels[LABEL_HOST] ?? '',
    generation: generationOf(labels),
    image: c.Image,
    state: c.State,
    // A claimed pool container counts from its claim: it may have idled in the pool for hours.
    created: claim?.at ?? c.Created,
    ...(c.Labels[LABEL_POOL] !== undefined ? { poolVolume: c.Labels[LABEL_VOLUME] ?? '' } : {}),
  };
}

/** The name of the claim record of a pool container. */
export function claimVolumeName(containerId: string): string {
  return `keel-claim-${containerId.slice(0, 12)}`;
}

/** A claim record: the session labels it carries and when it was made (seconds since the epoch). */
interface Claim {
  labels: Record<string, string>;
  at?: number;
}

/** Claim records by container id, all or one session's. */
async function claims(docker: Docker, sessionId?: string): Promise<Map<string, Claim>> {
  const label = [`${LABEL_MANAGED}=true`, LABEL_CLAIM, ...(sessionId !== undefined ? [`${LABEL_SESSION}=${sessionId}`] : [])];
  const { Volumes } = await docker.listVolumes({ filters: { label } });
  const out = new Map<string, Claim>();
  for (const v of Volumes ?? []) {
    const id = v.Labels?.[LABEL_CLAIM];
    const at = Date.parse((v as { CreatedAt?: string }).CreatedAt ?? '') / 1000;
    if (id) out.set(id, { labels: v.Labels, ...(Number.isFinite(at) ? { at } : {}) });
  }
  return out;
}

/** Every Keel sandbox container on this Docker host, running or not; claimed pool containers name their session. */
export async function listManagedContainers(docker: Docker): Promise<ManagedContainer[]> {
  const [list, claimed] = await Promise.all([
    docker.listContainers({ all: true, filters: { label: [`${LABEL_MANAGED}=true`] } }),
    claims(docker),
  ]);
  return list.map((c) => toManaged(c, claimed.get(c.Id)));
}

/** The containers of one session, all generations (normally zero or one): its own and the pool containers it claimed. */
export async function sessionContainers(docker: Docker, sessionId: string): Promise<ManagedContainer[]> {
  const [list, claimed] = await Promise.all([
    docker.listContainers({ all: true, filters: { label: [`${LABEL_MANAGED}=true`, `${LABEL_SESSION}=${sessionId}`] } }),
    claims(docker, sessionId),
  ]);
  const mine = list.map((c) => toManaged(c));
  if (claimed.size > 0) {
    const pooled = await docker.listContainers({ all: true, filters: { id: [...claimed.keys()] } });
    for (const c of pooled) if (claimed.has(c.Id)) mine.push(toManaged(c, claimed.get(c.Id)));
  }
  return mine;
}

/** Record that pool container `containerId` serves (session, generation). Idempotent. */
export async function recordClaim(docker: Docker, containerId: string, sessionId: string, hostId: string, generation: number): Promise<void> {
  await docker.createVolume({
    Name: claimVolumeName(containerId),
    Labels: { ...sessionLabels(sessionId, hostId, generation), [LABEL_CLAIM]: containerId },
  });
}

/** Remove a container (with force) and, for a pool container, its workspace volume. True when the container existed. */
export async function removeContainer(docker: Docker, c: Pick<ManagedContainer, 'id' | 'poolVolume'>): Promise<boolean> {
  const removed = await ignore404(docker.getContainer(c.id).remove({ force: true, v: true }));
  if (c.poolVolume) await ignore404(docker.getVolume(c.poolVolume).remove());
  return removed;
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
    removed = (await removeContainer(docker, c)) || removed;
  }
  // Claim records go with the other labelled volumes, after their containers.
  const { Volumes } = await docker.listVolumes({ filters: { label: [`${LABEL_MANAGED}=true`, `${LABEL_SESSION}=${sessionId}`] } });
  const names = new Set((Volumes ?? []).filter((v) => doomed(generationOf(v.Labels))).map((v) => v.Name));
  if (doomed(1)) names.add(volumeName(sessionId));
  for (const name of names) removed = (await ignore404(docker.getVolume(name).remove())) || removed;
  return removed;
}

export interface ReapOptions {
  /** Only containers and volumes labelled with this host. @default every host */
  hostId?: string;
  /** Leave younger containers and volumes alone (a session may be starting). @default 0 */
  minAgeSec?: number;
  /** Called with each container id removed. */
  onContainer?: (id: string) => void;
}

/**
 * Remove containers and workspace volumes of sessions that are no longer live
 * (e.g. a worker died between provisioning and teardown). Returns the session ids reaped.
 */
export async function reapOrphans(
  docker: Docker,
  isLive: (sessionId: string) => Promise<boolean>,
  opts: ReapOptions = {},
): Promise<string[]> {
  const minAge = opts.minAgeSec ?? 0;
  const now = Date.now() / 1000;
  const old = (createdSec: number) => now - createdSec >= minAge;
  const sessions = new Set<string>();
  // Claimed warm-pool containers carry their session in a claim record; listManagedContainers resolves it.
  for (const c of await listManagedContainers(docker)) {
    if (c.sessionId && (!opts.hostId || c.hostId === opts.hostId) && old(c.created)) sessions.add(c.sessionId);
  }
  const labels = [`${LABEL_MANAGED}=true`, ...(opts.hostId ? [`${LABEL_HOST}=${opts.hostId}`] : [])];
  const { Volumes } = await docker.listVolumes({ filters: { label: labels } });
  for (const v of Volumes ?? []) {
    const id = v.Labels?.[LABEL_SESSION];
    const created = Date.parse((v as { CreatedAt?: string }).CreatedAt ?? '') / 1000;
    if (id && (Number.isNaN(created) || old(created))) sessions.add(id);
  }
  const reaped: string[] = [];
  for (const sessionId of sessions) {
    if (await isLive(sessionId)) continue;
    await removeSession(docker, sessionId, opts.onContainer);
    reaped.push(sessionId);
  }
  return reaped;
}

/**
 * Remove this host's pool containers that are unclaimed and not running (their executor exits when its
 * lease runs out, i.e. when the worker that filled the pool died) and older than `minAgeSec`, with their
 * workspace volumes, and pool volumes no container uses. Returns how many containers it removed.
 */
export async function reapStoppedPool(docker: Docker, hostId: string, minAgeSec = 120): Promise<number> {
  const [list, claimed] = await Promise.all([
    docker.listContainers({ all: true, filters: { label: [`${LABEL_MANAGED}=true`, `${LABEL_POOL}=${hostId}`] } }),
    claims(docker),
  ]);
  const now = Date.now() / 1000;
  let n = 0;
  for (const c of list) {
    if (claimed.has(c.Id) || c.State === 'running' || c.State === 'restarting' || now - c.Created < minAgeSec) continue;
    if (await removeContainer(docker, toManaged(c))) n++;
  }
  const { Volumes } = await docker.listVolumes({ filters: { label: [`${LABEL_MANAGED}=true`, `${LABEL_POOL}=${hostId}`], dangling: ['true'] } });
  for (const v of Volumes ?? []) {
    // A pool volume is created just before its container: leave young ones alone.
    const createdAt = Date.parse((v as { CreatedAt?: string }).CreatedAt ?? '');
    if (Number.isFinite(createdAt) && Date.now() - createdAt < minAgeSec * 1000) continue;
    await ignore404(docker.getVolume(v.Name).remove()).catch(() => false); // in use after all: a later pass
  }
  return n;
}
