/**
 * Custom sandbox images: a user's Dockerfile on top of Keel's sandbox image (`FROM ${KEEL_BASE}`),
 * built with `docker build`, then checked against Keel's contract before it gets its tag: no USER,
 * ENTRYPOINT or CMD of its own, and an executor that starts under the lockdown, answers a ping and
 * runs commands as keel (uid 1000) with a writable /workspace.
 */
import { createHash, randomUUID } from 'node:crypto';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type Docker from 'dockerode';
import { startAttached } from './bring-up';
import { statusOf } from './docker-errors';
import { imageExists, recipeFiles } from './image';
import { volumeName } from './labels';
import { createOptions, EXECUTOR_COMMAND } from './lockdown';
import { SandboxRuntime } from './runtime';
import { BuildProgress } from './build-progress';

/** The build argument a custom Dockerfile starts from: `ARG KEEL_BASE` then `FROM ${KEEL_BASE}`. */
export const BASE_BUILD_ARG = 'KEEL_BASE';
/** Label on a custom image: the Keel sandbox image it was built on. */
export const LABEL_BASE = 'keel.base';
/** The users the sandbox image may name (`USER` in its config): Keel's keel user, uid and gid 1000. */
const KEEL_USERS = new Set(['keel', '1000', 'keel:keel', '1000:1000', 'keel:1000', '1000:keel']);
const CHECK_HOST = 'keel-image-check';

/** An image that does not keep Keel's contract; `problems` says how, one line each. */
export class ImageContractError extends Error {
  constructor(readonly image: string, readonly problems: string[]) {
    super(`image ${image} breaks Keel's sandbox contract:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ImageContractError';
  }
}

/** Bad input (no Dockerfile, no base image, a bad tag) or a failed `docker build`. */
export class ImageBuildError extends Error {
  override name = 'ImageBuildError';
}

/** Where to build from: a Dockerfile (its folder is the context) or a folder with a Dockerfile. */
export function resolveRecipe(from: string): { context: string; dockerfile: string } {
  const path = resolve(from);
  if (!existsSync(path)) throw new ImageBuildError(`--from ${from}: no such file or folder`);
  if (statSync(path).isDirectory()) {
    const dockerfile = join(path, 'Dockerfile');
    if (!existsSync(dockerfile)) throw new ImageBuildError(`--from ${from}: the folder has no Dockerfile`);
    return { context: path, dockerfile };
  }
  return { context: dirname(path), dockerfile: path };
}

/**
 * The default tag: `keel-custom:<12 hex digits>` of sha256 over the base tag, the Dockerfile and every
 * file of the context (as {@link recipeFiles} walks it), so a changed recipe or base means a new tag.
 */
export function customImageTag(recipe: { context: string; dockerfile: string }, base: string): string {
  const hash = createHash('sha256').update(`${base}\0`).update(readFileSync(recipe.dockerfile)).update('\0');
  for (const file of recipeFiles(recipe.context)) hash.update(`${file}\0`).update(readFileSync(join(recipe.context, file))).update('\0');
  return `keel-custom:${hash.digest('hex').slice(0, 12)}`;
}

/** What the image's config says against the contract (no container needed). */
export function configProblems(config: { User?: string; Entrypoint?: string[] | string | null; Cmd?: string[] | string | null }): string[] {
  const problems: string[] = [];
  const user = config.User ?? '';
  if (!KEEL_USERS.has(user)) {
    problems.push(`its USER is ${user ? `'${user}'` : 'root (none set)'}: the sandbox user is keel (uid 1000); run root steps, then end with \`USER keel\``);
  }
  const entrypoint = config.Entrypoint ?? [];
  if (entrypoint.length) {
    problems.push(`it sets ENTRYPOINT ${JSON.stringify(entrypoint)}: Keel starts the executor itself, with no entrypoint around it; remove the ENTRYPOINT`);
  }
  const cmd = config.Cmd ?? [];
  if (JSON.stringify(cmd) !== JSON.stringify(EXECUTOR_COMMAND)) {
    problems.push(`its CMD is ${JSON.stringify(cmd)}, not ${JSON.stringify(EXECUTOR_COMMAND)}: leave CMD as the base image sets it`);
  }
  return problems;
}

/**
 * Check `image` against Keel's contract: its config ({@link configProblems}), then a container under
 * the same lockdown a session gets (read-only root, no network, no capabilities but the executor's):
 * the executor must answer a ping and run a command as keel (uid/gid 1000) that can write /workspace.
 `name` is what errors call the image. Throws {@link ImageContractError}; the container and its volume are removed either way.
 */
export async function checkImageContract(docker: Docker, image: string, name: string = image): Promise<void> {
  const info = await docker.getImage(image).inspect();
  const problems = configProblems(info.Config ?? {});
  if (problems.length) throw new ImageContractError(name, problems);

  const sessionId = `imagecheck-${randomUUID().slice(0, 8)}`;
  const runtime = new SandboxRuntime(docker);
  const container = await docker.createContainer(createOptions({ sessionId, hostId: CHECK_HOST, image }));
  try {
    try {
      await startAttached(runtime, container.id);
    } catch (err) {
      const logs = await container.logs({ stdout: true, stderr: true, tail: 20 }).then(demux).catch(() => '');
      throw new ImageContractError(name, [`the executor did not start under Keel's lockdown (${(err as Error).message})${logs.trim() ? `; its output:\n${logs.trim()}` : ''}`]);
    }
    const probe = 'id -u; id -g; id -un; touch /workspace/.keel-image-check && rm /workspace/.keel-image-check && echo workspace-writable';
    const r = await runtime.client(container.id).request('shell', { command: probe, timeoutSec: 20, maxOutput: 4000, storeBytes: 0 }, { timeoutMs: 30_000 });
    if (!r.ok) throw new ImageContractError(name, [`the executor could not run a command: ${r.error.code}: ${r.error.message}`]);
    const lines = String(r.result.output ?? '').trim().split('\n');
    const [uid, gid, user] = lines;
    if (uid !== '1000' || gid !== '1000') problems.push(`commands run as uid ${uid} gid ${gid}, not 1000:1000`);
    if (user !== 'keel') problems.push(`uid 1000 is ${user ? `'${user}'` : 'not in /etc/passwd'}, not keel: keep the base image's keel user`);
    if (!lines.includes('workspace-writable')) problems.push(`the keel user cannot write /workspace (${lines.slice(3).join(' ') || 'no output'}): keep it owned by keel`);
    if (problems.length) throw new ImageContractError(name, problems);
  } finally {
    runtime.forget(container.id);
    await container.remove({ force: true, v: true }).catch(() => {});
    await docker.getVolume(volumeName(sessionId, 1)).remove().catch(() => {});
  }
}

/** The text of a non-TTY container's log: Docker frames it, 8 header bytes (stream, 0, 0, 0, length) a frame. */
function demux(buf: Buffer): string {
  const parts: string[] = [];
  let at = 0;
  while (at + 8 <= buf.length && buf[at]! <= 2 && buf[at + 1] === 0 && buf[at + 2] === 0 && buf[at + 3] === 0) {
    const len = buf.readUInt32BE(at + 4);
    parts.push(buf.subarray(at + 8, at + 8 + len).toString('utf8'));
    at += 8 + len;
  }
  return (parts.join('') + buf.subarray(at).toString('utf8')).replace(/[^\x20-\x7e\n]/g, '');
}

/** Run `docker <args>`, its output to `log` line by line; rejects with the output's tail on failure. */
function dockerCli(args: string[], log: (line: string) => void): Promise<void> {
  return new Promise<void>((resolvePromise, reject) => {
    const child = spawn('docker', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString();
      tail = (tail + text).slice(-4000);
      for (const line of text.split('\n')) if (line.trim()) log(line);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolvePromise() : reject(new ImageBuildError(`docker build failed (exit ${code}):\n${tail}`))));
  });
}

export interface BuildCustomImageOptions {
  /** A Dockerfile, or a folder with one (the build context is the folder). */
  from: string;
  /** Keel's sandbox image to build on (what `keel image` prints); passed as the build arg KEEL_BASE. */
  base: string;
  /** @default {@link customImageTag} */
  tag?: string;
  /**
   * The network RUN steps get (`docker build --network`): `host` to reach the host's package mirrors
   * and proxies, `none` for a build that needs no network. @default Docker's (the default bridge)
   */
  network?: string;
  /** Build output, line by line. */
  log?: (line: string) => void;
}

/**
 * Build a custom image on `base`, check it ({@link checkImageContract}) under a temporary tag, and only
 * then give it `tag`: an image that breaks the contract never gets the tag (nor replaces a good one).
 */
export async function buildCustomImage(docker: Docker, opts: BuildCustomImageOptions): Promise<{ tag: string; base: string; imageId: string }> {
  const log = opts.log ?? (() => {});
  const recipe = resolveRecipe(opts.from);
  if (!(await imageExists(docker, opts.base))) {
    throw new ImageBuildError(`the base image ${opts.base} is not on this Docker host: build it first with \`keel image --build\``);
  }
  const tag = opts.tag ?? customImageTag(recipe, opts.base);
  if (!/^[a-z0-9][a-z0-9._\/:-]*$/.test(tag) || tag.length > 255) throw new ImageBuildError(`--tag ${tag}: not a Docker image name (lower case, digits, . _ - / :)`);
  const executor = (await docker.getImage(opts.base).inspect()).Config?.Labels?.['keel.recipe'];
  const scratch = `keel-image-check:${randomUUID().slice(0, 12)}`;
  log(`building ${tag} from ${recipe.dockerfile} on ${opts.base}`);
  // The builder's own lines say which step of how many; a step that runs quietly is told again.
  const progress = new BuildProgress();
  const quiet = setInterval(() => {
    const line = progress.quiet(Date.now());
    if (line) log(line);
  }, 1000);
  const build = dockerCli([
    'build',
    '--build-arg', `${BASE_BUILD_ARG}=${opts.base}`,
    '--label', `${LABEL_BASE}=${opts.base}`,
    // The executor is the base's: the version sessions record (activities read this label).
    ...(executor ? ['--label', `keel.recipe=${executor}`] : []),
    '--label', `keel.build=custom:${basename(recipe.dockerfile)}`,
    ...(opts.network ? ['--network', opts.network] : []),
    // Remove the intermediate containers of a failed step too (the legacy builder keeps them).
    '--force-rm',
    '-f', recipe.dockerfile,
    '-t', scratch,
    recipe.context,
  ], (line) => {
    progress.line(line, Date.now());
    log(line);
  });
  try {
    await build;
  } finally {
    clearInterval(quiet);
  }
  try {
    log(`checking ${tag} under Keel's lockdown`);
    await checkImageContract(docker, scratch, tag);
    const colon = tag.lastIndexOf(':');
    const [repo, version] = colon > tag.lastIndexOf('/') ? [tag.slice(0, colon), tag.slice(colon + 1)] : [tag, 'latest'];
    await docker.getImage(scratch).tag({ repo, tag: version });
    const imageId = (await docker.getImage(scratch).inspect()).Id;
    return { tag: version === 'latest' && colon < 0 ? `${repo}:latest` : tag, base: opts.base, imageId };
  } finally {
    // Untags the scratch name; the image stays under `tag` when it passed, and goes when it did not.
    await docker.getImage(scratch).remove().catch((err) => {
      if (statusOf(err) !== 404) log(`could not remove ${scratch}: ${(err as Error).message}`);
    });
  }
}

/** Custom images on this Docker host (label {@link LABEL_BASE}), with the base each was built on. */
export async function listCustomImages(docker: Docker): Promise<Array<{ tags: string[]; id: string; base: string }>> {
  const images = await docker.listImages({ filters: JSON.stringify({ label: [LABEL_BASE] }) });
  return images.map((i) => ({ tags: i.RepoTags ?? [], id: i.Id, base: i.Labels?.[LABEL_BASE] ?? '' }));
}

/**
 * Check the images of `KEEL_POOL_IMAGES` on this Docker host: present, and keeping the sandbox contract (one
 * locked-down container each, removed afterwards). Returns one line per image that fails, naming the
 * image, what is wrong and the fix; empty when all pass.
 */
export async function poolImageProblems(docker: Docker, images: readonly string[]): Promise<string[]> {
  const problems: string[] = [];
  for (const image of images) {
    const drop = `or remove ${image} from KEEL_POOL_IMAGES`;
    try {
      if (!(await imageExists(docker, image))) {
        problems.push(`${image} is not on this Docker host. Fix: build it here (npx keel image build --from <its Dockerfile> --tag ${image}) or docker pull it, ${drop}`);
        continue;
      }
      await checkImageContract(docker, image);
    } catch (err) {
      if (!(err instanceof ImageContractError)) {
        problems.push(`${image} could not be checked (${(err as Error).message}). Fix: see that Docker can run it, ${drop}`);
        continue;
      }
      problems.push(`${err.message}\n  Fix: change its Dockerfile as listed and rebuild it with npx keel image build (which runs the same check), ${drop}`);
    }
  }
  return problems;
}
