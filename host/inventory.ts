/**
 * What sandbox objects a Docker host holds: workspace volumes, session and
 * warm-pool containers, claim records, and their removal. Every lookup is a
 * label filter (see `labels.ts`).
 */
import type Docker from 'dockerode';
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
  if (c.poolVolume) await ignore404(docker.getVolume(c.poolVolume).remove());
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
  const names = new Set((Volumes ?? []).filter((v) => doomed(generationOf(v.Labels))).map((v) => v.Name));
  if (doomed(1)) names.add(volumeName(sessionId));
  for (const name of names) removed = (await ignore404(docker.getVolume(name).remove())) || removed;
  if (belowGeneration === undefined) removed = (await removeEgress(docker, sessionId, onContainer)) || removed;
  return removed;
}

