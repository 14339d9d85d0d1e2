/**
 * What sandbox objects a Docker host holds: workspace volumes, session and
 * warm-pool containers, claim records, and their removal. Every lookup is a
 * label filter (see `labels.ts`).
 */
import type Docker from 'dockerode';
import { basename, dirname } from 'node:path';
import { SANDBOX_DEFAULTS } from '../common/defaults';
import { ensureDisk, LABEL_DISK, removeDisk } from './disks';
import { ignore404, statusOf } from './docker-errors';
import { removeEgress } from './egress';
import {
  claimVolumeName,
  generationOf,
  LABEL_CLAIM,
  LABEL_HOST,
  LABEL_MANAGED,
  LABEL_POOL,
  LABEL_SESSION,
  LABEL_VOLUME,
  poolLabels,
  poolNames,
  sessionLabels,
  volumeName,
} from './labels';

/** Where a sandbox's /workspace filesystem is made (see `disks.ts`); without it, /workspace is a plain volume with no quota. */
export interface DiskOptions {
  dir: string;
  sizeMb: number;
}

/**
 * Create a workspace volume if it does not exist (Docker returns the existing one). With `disk`, the volume
 * binds a filesystem of its own of `disk.sizeMb` MiB, made and mounted first (again after a host reboot).
 */
async function createWorkspace(docker: Docker, name: string, labels: Record<string, string>, disk?: DiskOptions): Promise<void> {
  // Made before (a retry, a stopped container after a host reboot, or a volume from before disk quotas, which stays as it is).
  if (await remountWorkspace(docker, name)) return;
  if (!disk) {
    await docker.createVolume({ Name: name, Labels: labels });
    return;
  }
  const mount = await ensureDisk(disk.dir, name, disk.sizeMb);
  await docker.createVolume({
    Name: name,
    Labels: { ...labels, [LABEL_DISK]: mount },
    Driver: 'local',
    DriverOpts: { type: 'none', o: 'bind', device: mount },
  });
}

/**
 * If workspace volume `name` exists, mount its disk again when it has one and the mount is gone (a host reboot),
 * so that Docker never binds the empty directory below. False when there is no such volume.
 */
export async function remountWorkspace(docker: Docker, name: string): Promise<boolean> {
  let made: Docker.VolumeInspectInfo;
  try {
    made = await docker.getVolume(name).inspect();
  } catch (err) {
    if (statusOf(err) === 404) return false;
    throw err;
  }
  const mount = made.Labels?.[LABEL_DISK];
  if (mount && basename(mount) === name) await ensureDisk(dirname(mount), name, SANDBOX_DEFAULTS.diskMb);
  return true;
}

/** Create the workspace volume of a session's generation if it does not exist. */
export async function ensureVolume(docker: Docker, sessionId: string, hostId: string, generation = 1, disk?: DiskOptions): Promise<void> {
  await createWorkspace(docker, volumeName(sessionId, generation), sessionLabels(sessionId, hostId, generation), disk);
}

/** Create a pool container's workspace volume; returns its name. */
export async function ensurePoolVolume(docker: Docker, token: string, hostId: string, disk?: DiskOptions): Promise<string> {
  const { volume } = poolNames(token);
  await createWorkspace(docker, volume, poolLabels(hostId), disk);
  return volume;
}

/**
 * Remove a volume and, when it has one, its own filesystem (`labels`: the volume's, when the caller has
 * them). False when the volume was already gone.
 */
export async function removeVolume(docker: Docker, name: string, labels?: Record<string, string>): Promise<boolean> {
  const volume = docker.getVolume(name);
  let disk = labels?.[LABEL_DISK];
  if (!labels) {
    try {
      disk = (await volume.inspect()).Labels?.[LABEL_DISK];
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }
  const removed = await ignore404(volume.remove());
  if (disk && basename(disk) === name) await removeDisk(disk);
  return removed;
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

export function toManaged(c: Docker.ContainerInfo, claim?: Claim): ManagedContainer {
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

/** A claim record: the session labels it carries and when it was made (seconds since the epoch). */
export interface Claim {
  labels: Record<string, string>;
  at?: number;
}

/** Claim records by container id, all or one session's. */
export async function claims(docker: Docker, sessionId?: string): Promise<Map<string, Claim>> {
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
  if (c.poolVolume) await removeVolume(docker, c.poolVolume);
  return removed;
}

/**
 * Remove a session's containers and workspace volumes: all generations, or with
 * `belowGeneration` only the older ones. Removing them all also removes a networked
 * session's egress proxy and network. Idempotent; true when anything was removed.
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
  const names = new Map<string, Record<string, string> | undefined>();
  for (const v of Volumes ?? []) if (doomed(generationOf(v.Labels))) names.set(v.Name, v.Labels ?? {});
  if (doomed(1) && !names.has(volumeName(sessionId))) names.set(volumeName(sessionId), undefined);
  for (const [name, labels] of names) removed = (await removeVolume(docker, name, labels)) || removed;
  if (belowGeneration === undefined) removed = (await removeEgress(docker, sessionId, onContainer)) || removed;
  return removed;
}

