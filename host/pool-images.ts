/**
 * Which images a sandbox host keeps warm: the default image (`KEEL_POOL_SIZE`) and the images the
 * operator names (`KEEL_POOL_IMAGES`), one {@link WarmPool} each. A named image is checked against the
 * sandbox contract ({@link checkImageContract}) before it is pooled, as `keel image build` checks a
 * custom image before it gets its tag, so a pool never hands a session a container that cannot serve it
 * (the check is `poolImageProblems` in `custom-image.ts`; this file is pure, the config loader reads it).
 *
 * Several pools on one host need nothing more from labels: every pool container carries `keel.pool=<host>`,
 * each pool claims only from its own in-memory idle list, a claimed container is found by its claim record,
 * and the reaper removes any stopped unclaimed one whatever its image.
 */

/** One warm pool: the image its containers run and how many it keeps idle. */
export interface PoolImage {
  image: string;
  size: number;
}

/** A pool of the worker's plan; `named` when it came from `KEEL_POOL_IMAGES` (and is checked). */
export interface PlannedPool extends PoolImage {
  named: boolean;
}

/** Docker image names: lower case, digits, `. _ - / :` and a digest's `@`. */
const IMAGE_NAME = /^[a-z0-9][a-z0-9._/:@-]*$/;

/** Why `name` is no Docker image name, or undefined when it is one. */
export function imageNameProblem(name: string): string | undefined {
  if (!IMAGE_NAME.test(name) || name.length > 255) return `"${name}" is not a Docker image name (lower case letters, digits, . _ - / : @)`;
  return undefined;
}

/**
 * The name two spellings of one image share, for matching a session's image with a pool's: a name
 * without tag or digest means `:latest`, and Docker Hub's `docker.io/` and `docker.io/library/` go.
 * Names are otherwise compared as written: `my-tools:1` and its image id are different names.
 */
export function imageKey(name: string): string {
  const short = name.replace(/^docker\.io\/library\//, '').replace(/^docker\.io\//, '');
  const last = short.slice(short.lastIndexOf('/') + 1);
  return last.includes(':') || last.includes('@') ? short : `${short}:latest`;
}

/**
 * The pools a sandbox host runs: the default image with `defaultSize` (when above 0), then each named
 * image. A named image that is the default image replaces the default's pool (its size wins).
 */
export function planPools(defaultImage: string, defaultSize: number, named: readonly PoolImage[]): PlannedPool[] {
  const plan: PlannedPool[] = [];
  const namesDefault = named.some((p) => imageKey(p.image) === imageKey(defaultImage));
  if (defaultSize > 0 && !namesDefault) plan.push({ image: defaultImage, size: defaultSize, named: false });
  for (const p of named) plan.push({ ...p, named: true });
  return plan;
}

/** `keel-sandbox:abc ×2 (default), my-tools:1 ×2`: a plan in one line, for logs and `keel doctor`. */
export function describePools(plan: readonly PlannedPool[], defaultImage: string): string {
  if (!plan.length) return 'none (KEEL_POOL_SIZE=0, KEEL_POOL_IMAGES unset)';
  return plan.map((p) => `${p.image} ×${p.size}${imageKey(p.image) === imageKey(defaultImage) ? ' (default image)' : ''}`).join(', ');
}
