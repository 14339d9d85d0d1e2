/**
 * The sandbox image: its tag is derived from the recipe in `sandbox/`, so a
 * changed recipe means a new tag and a rebuild.
 */
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type Docker from 'dockerode';
import { sandboxDir } from './paths';

/** Files under `sandbox/` that are not part of the recipe: notes, and Python's byte-code caches. */
const NOT_RECIPE = /(^|\/)(__pycache__(\/|$)|[^/]*\.pyc$|[^/]*\.md$)/;

/** Every file of the recipe in `dir`, as paths relative to it, sorted (the hashing order). */
export function recipeFiles(dir: string = sandboxDir()): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, e.name);
      const rel = relative(dir, path);
      if (NOT_RECIPE.test(rel)) continue;
      if (e.isDirectory()) walk(path);
      else out.push(rel);
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * First 12 hex digits of sha256 over every recipe file ({@link recipeFiles}): its relative path,
 * a NUL, its contents, a NUL. A renamed, added or changed file changes the tag.
 */
export function recipeHash(dir: string = sandboxDir()): string {
  const files = recipeFiles(dir);
  if (!files.includes('Dockerfile')) throw new Error(`ENOENT: no sandbox recipe (Dockerfile) in ${dir}`);
  const hash = createHash('sha256');
  for (const file of files) hash.update(`${file}\0`).update(readFileSync(join(dir, file))).update('\0');
  return hash.digest('hex').slice(0, 12);
}

/** `keel-sandbox:<recipe hash>`. */
export function defaultImageTag(dir?: string): string {
  return `keel-sandbox:${recipeHash(dir)}`;
}

/** Whether the Docker host has an image with this tag. */
export async function imageExists(docker: Docker, tag: string): Promise<boolean> {
  try {
    await docker.getImage(tag).inspect();
    return true;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return false;
    throw err;
  }
}

/**
 * Build the image with `bash sandbox/build.sh <tag>` unless it already exists.
 * Build output goes to `log` line by line. Resolves to true when it built.
 */
export async function ensureImage(docker: Docker, tag: string, log: (line: string) => void = () => {}): Promise<boolean> {
  if (await imageExists(docker, tag)) return false;
  const dir = sandboxDir();
  log(`building sandbox image ${tag} (bash sandbox/build.sh ${tag})`);
  await new Promise<void>((resolve, reject) => {
    const child = spawn('bash', [join(dir, 'build.sh'), tag], { stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString();
      tail = (tail + text).slice(-4000);
      for (const line of text.split('\n')) if (line.trim()) log(line);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`sandbox image build failed (exit ${code}):\n${tail}`));
    });
  });
  if (!(await imageExists(docker, tag))) throw new Error(`sandbox/build.sh finished but image ${tag} is missing`);
  return true;
}
