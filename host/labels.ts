/**
 * How Keel names and labels the Docker objects of a sandbox, so that every
 * lookup (a session's containers, a host's pool, orphans to reap) is a label
 * filter, and a name collision means the same (session, generation).
 */
import { createHash } from 'node:crypto';

export const LABEL_MANAGED = 'keel.managed';
export const LABEL_SESSION = 'keel.session';
export const LABEL_HOST = 'keel.host';
/** Which of a session's containers this is: 1 at first, +1 per restore. Absent on containers made before generations (read as 1). */
export const LABEL_GENERATION = 'keel.generation';
/**
 * On warm-pool containers and their workspace volumes: the host id. Docker labels cannot change after
 * create, so a pool container never carries `keel.session`; a claim record (see `inventory.ts`) says whose it is.
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

/**
 * On a networked session's own network and egress proxy container: the session id. Not `keel.managed`: these
 * are no sandbox containers, and every sandbox lookup would otherwise have to skip them.
 */
export const LABEL_EGRESS = 'keel.egress';

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

/** Pool container and volume names: `keel-pool-<token>`, `keel-ws-pool-<token>`. */
export function poolNames(token: string): { container: string; volume: string } {
  return { container: `keel-pool-${token}`, volume: `keel-ws-pool-${token}` };
}

/** Labels of a pool container (and, without `keel.volume`, of its workspace volume). */
export function poolLabels(hostId: string, volume?: string): Record<string, string> {
  return { [LABEL_MANAGED]: 'true', [LABEL_HOST]: hostId, [LABEL_POOL]: hostId, ...(volume ? { [LABEL_VOLUME]: volume } : {}) };
}

/** The name of the claim record of a pool container. */
export function claimVolumeName(containerId: string): string {
  return `keel-claim-${containerId.slice(0, 12)}`;
}

/** A networked session's own internal network and its egress proxy container (one of each per session). */
export function egressNames(sessionId: string): { network: string; proxy: string } {
  return { network: `keel-net-${safeName(sessionId)}`, proxy: `keel-egress-${safeName(sessionId)}` };
}

/** Labels of a session's network and egress proxy. */
export function egressLabels(sessionId: string, hostId: string): Record<string, string> {
  return { [LABEL_EGRESS]: sessionId, [LABEL_HOST]: hostId };
}
