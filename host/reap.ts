/**
 * Removing what no live session owns: containers and volumes of sessions that
 * ended (a host that died mid-teardown, a crashed test, a deleted workflow), and
 * warm-pool containers whose worker died. The caller decides what "live" means.
 */
import type Docker from 'dockerode';
import { listDisks, removeDisk } from './disks';
import { ignore404, statusOf } from './docker-errors';
import { egressSessions } from './egress';
import { claims, listManagedContainers, removeContainer, removeSession, removeVolume, toManaged } from './inventory';
import { LABEL_HOST, LABEL_MANAGED, LABEL_POOL, LABEL_SESSION } from './labels';

export interface ReapOptions {
  /** Only containers and volumes labelled with this host. @default every host */
  hostId?: string;
  /** Leave younger containers and volumes alone (a session may be starting). @default 0 */
  minAgeSec?: number;
  /** Called with each container id removed. */
  onContainer?: (id: string) => void;
  /** Also remove /workspace filesystems in this directory whose volume is gone (see `disks.ts`). @default none */
  diskDir?: string;
}

/**
 * Remove containers, workspace volumes, egress proxies and networks of sessions that are
 * no longer live (e.g. a worker died between provisioning and teardown). Returns the session ids reaped.
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
  for (const n of await egressSessions(docker, opts.hostId)) {
    if (Number.isNaN(n.created) || old(n.created)) sessions.add(n.sessionId);
  }
  const reaped: string[] = [];
  for (const sessionId of sessions) {
    if (await isLive(sessionId)) continue;
    await removeSession(docker, sessionId, opts.onContainer);
    reaped.push(sessionId);
  }
  if (opts.diskDir) await reapDisks(docker, opts.diskDir, minAge);
  return reaped;
}

/**
 * Remove the /workspace filesystems in `dir` older than `minAgeSec` whose Docker volume is gone (a worker
 * that died between removing a volume and its disk, or between making a disk and its volume). Returns how many.
 */
export async function reapDisks(docker: Docker, dir: string, minAgeSec = 0): Promise<number> {
  let n = 0;
  for (const d of await listDisks(dir)) {
    if (Date.now() - d.changedMs < minAgeSec * 1000) continue;
    try {
      await docker.getVolume(d.volume).inspect();
      continue; // its volume still exists: removing the volume removes it
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    await removeDisk(d.mount);
    n++;
  }
  return n;
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
    await removeVolume(docker, v.Name, v.Labels ?? {}).catch(() => false); // in use after all: a later pass
  }
  return n;
}
