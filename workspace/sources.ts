/**
 * Where a seed comes from (`keel run --workspace`): a directory, a tar file, or a
 * git repository. Each becomes a directory on the host that `storeDirectory`
 * turns into a snapshot; a tar is checked entry by entry before anything is
 * written, a git repository is cloned at one commit, history included, so the
 * agent can commit on top of it.
 */
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar-stream';
import type { BlobStore } from '../blobs';
import { linkStaysInside, storeDirectory, WorkspaceError, type SeedSnapshot } from './tree';

/** What seeded a session's workspace, as its spec records it. */
export interface SeedSource {
  kind: 'dir' | 'tar' | 'git';
  /** The path given, resolved. */
  path: string;
  /** For git: the ref asked for, the commit it named, and the branch checked out (none: detached). */
  ref?: string;
  commit?: string;
  branch?: string;
}

/** A short description of a seed's source, for people (`WorkspaceSeed.source`). */
export function describeSource(s: SeedSource): string {
  if (s.kind === 'git') return `git ${s.path} ${s.ref ?? 'HEAD'} (${s.commit?.slice(0, 12)}${s.branch ? ` on ${s.branch}` : ', detached'})`;
  return `${s.kind} ${s.path}`;
}

export interface PrepareOptions {
  /** For a git repository: the commit to take. @default HEAD */
  ref?: string;
}

/**
 * Store `path` (a directory, a `.tar`/`.tar.gz`/`.tgz` file, or a git repository) as a snapshot in
 * `blobs`. Throws {@link WorkspaceError} naming the problem for a missing path, an unknown ref, a tar
 * entry outside the archive (`../`, absolute) or a symlink pointing out.
 */
export async function prepareWorkspace(path: string, blobs: BlobStore, opts: PrepareOptions = {}): Promise<SeedSnapshot & { source: SeedSource }> {
  const abs = resolve(path);
  const st = await stat(abs).catch(() => undefined);
  if (!st) throw new WorkspaceError(`workspace ${path}: no such file or directory`);
  if (st.isDirectory()) {
    if (await isGitRepo(abs)) return await fromGit(abs, blobs, opts.ref ?? 'HEAD');
    if (opts.ref !== undefined) throw new WorkspaceError(`workspace ${path}: --ref ${opts.ref} needs a git repository, and ${path} is not one`);
    return { ...(await storeDirectory(abs, blobs, path)), source: { kind: 'dir', path: abs } };
  }
  if (st.isFile() && /\.(tar|tar\.gz|tgz)$/i.test(abs)) {
    if (opts.ref !== undefined) throw new WorkspaceError(`workspace ${path}: --ref needs a git repository, not a tar file`);
    return await withTemp(async (dir) => {
      await extractTar(abs, dir, path);
      return { ...(await storeDirectory(dir, blobs, path)), source: { kind: 'tar', path: abs } };
    });
  }
  throw new WorkspaceError(`workspace ${path}: give a directory, a git repository, or a .tar / .tar.gz / .tgz file`);
}

async function withTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const parent = await mkdtemp(join(tmpdir(), 'keel-seed-'));
  const dir = join(parent, 'w');
  await mkdir(dir);
  try {
    return await fn(dir);
  } finally {
    await rm(parent, { recursive: true, force: true });
  }
}

function git(args: string[], cwd?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('git', args, { cwd, env: { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' }, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr: String(stderr).trim() }));
      else resolve(String(stdout).trim());
    });
  });
}

/** A work tree's top (it holds `.git`) or a bare repository; a plain subdirectory of a work tree is seeded as a directory. */
async function isGitRepo(dir: string): Promise<boolean> {
  if (existsSync(join(dir, '.git'))) return true;
  if (!existsSync(join(dir, 'HEAD')) || !existsSync(join(dir, 'objects'))) return false;
  return (await git(['-C', dir, 'rev-parse', '--is-bare-repository']).catch(() => 'false')) === 'true';
}

/**
 * Clone the repository (no hard links into the source's objects: the clone is stored, not borrowed)
 * and check out `ref`: on its branch when `ref` names one (HEAD: the source's current branch), else
 * detached. The clone's `origin` (a host path) is removed; every commit reachable from the checked-out
 * one stays, so `git log` and `git commit` work in the sandbox.
 */
async function fromGit(repo: string, blobs: BlobStore, ref: string): Promise<SeedSnapshot & { source: SeedSource }> {
  const commit = await git(['-C', repo, 'rev-parse', '--verify', '--quiet', '--end-of-options', `${ref}^{commit}`]).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new WorkspaceError(`workspace ${repo} is a git repository and git is not installed here; install git, or pass a tar of it`);
    return '';
  });
  if (!commit) throw new WorkspaceError(`workspace ${repo}: unknown ref ${JSON.stringify(ref)} (no commit by that name; try a branch, tag or commit sha)`);
  let branch: string | undefined;
  if (ref === 'HEAD') branch = (await git(['-C', repo, 'symbolic-ref', '--quiet', '--short', 'HEAD']).catch(() => '')) || undefined;
  else if (await git(['-C', repo, 'show-ref', '--verify', '--quiet', `refs/heads/${ref}`]).then(() => true, () => false)) branch = ref;
  return await withTemp(async (dir) => {
    try {
      await git(['clone', '--quiet', '--no-hardlinks', '--no-checkout', '--', repo, dir]);
      if (branch) await git(['checkout', '--quiet', '-B', branch, commit], dir);
      else await git(['checkout', '--quiet', '--detach', commit], dir);
      await git(['remote', 'remove', 'origin'], dir);
    } catch (err) {
      throw new WorkspaceError(`workspace ${repo}: git clone at ${ref} failed: ${(err as { stderr?: string }).stderr || (err as Error).message}`);
    }
    const stored = await storeDirectory(dir, blobs, repo);
    return { ...stored, source: { kind: 'git', path: repo, ref, commit, ...(branch ? { branch } : {}) } };
  });
}

/**
 * Unpack a tar into `dir`, refusing (before writing it) any entry with an absolute path or a `..`
 * component, a symlink whose target leaves the archive, a hard link, a device or fifo, and any entry
 * that would be written through a symlink.
 */
export async function extractTar(file: string, dir: string, label: string): Promise<void> {
  const ex = extract();
  const dirModes: Array<[string, number]> = [];
  ex.on('entry', (header, stream, next) => {
    const done = (err?: unknown): void => {
      stream.resume();
      if (err) ex.destroy(err as Error);
      else next();
    };
    (async () => {
      const raw = header.name;
      if (raw.startsWith('/') || /^[A-Za-z]:[\\/]/.test(raw)) throw new WorkspaceError(`${label}: tar entry ${JSON.stringify(raw)} has an absolute path`);
      const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
      if (parts.includes('..')) throw new WorkspaceError(`${label}: tar entry ${JSON.stringify(raw)} climbs out of the archive (..)`);
      if (parts.some((p) => p.includes('\0'))) throw new WorkspaceError(`${label}: tar entry ${JSON.stringify(raw)} has a NUL in its name`);
      const rel = parts.join('/');
      const mode = (header.mode ?? 0o644) & 0o7777;
      if (rel === '') {
        if (header.type === 'directory') return;
        throw new WorkspaceError(`${label}: tar entry ${JSON.stringify(raw)} has no name`);
      }
      const target = join(dir, ...parts);
      await noSymlinkOnTheWay(dir, parts.slice(0, -1), label, raw);
      const existing = await lstat(target).catch(() => undefined);
      if (existing?.isDirectory() && header.type === 'directory') {
        dirModes.push([target, mode | 0o700]); // made earlier as the parent of an entry listed before it
        return;
      }
      if (existing) throw new WorkspaceError(`${label}: tar entry ${JSON.stringify(raw)} appears twice`);
      switch (header.type) {
        case 'directory':
          await mkdir(target, { recursive: false, mode: 0o700 }).catch(async (e: NodeJS.ErrnoException) => {
            if (e.code === 'ENOENT') {
              await mkdir(target, { recursive: true, mode: 0o700 });
              return;
            }
            throw e;
          });
          dirModes.push([target, mode | 0o700]);
          return;
        case 'file':
        case 'contiguous-file': {
          await mkdir(join(dir, ...parts.slice(0, -1)), { recursive: true, mode: 0o700 });
          await pipeline(stream, createWriteStream(target, { flags: 'wx', mode: 0o600 }));
          await chmod(target, mode);
          return;
        }
        case 'symlink': {
          const to = header.linkname ?? '';
          if (!linkStaysInside(rel, to)) throw new WorkspaceError(`${label}: tar symlink ${rel} -> ${to} points outside the workspace`);
          await mkdir(join(dir, ...parts.slice(0, -1)), { recursive: true, mode: 0o700 });
          await symlink(to, target);
          return;
        }
        case 'link':
          throw new WorkspaceError(`${label}: tar entry ${rel} is a hard link; re-create the tar with --hard-dereference`);
        default:
          throw new WorkspaceError(`${label}: tar entry ${rel} is a ${header.type ?? 'special file'}; only files, directories and symlinks can be seeded`);
      }
    })().then(() => done(), done);
  });
  const input = createReadStream(file);
  try {
    if (/\.(tar\.gz|tgz)$/i.test(file)) await pipeline(input, createGunzip(), ex);
    else await pipeline(input, ex);
  } catch (err) {
    if (err instanceof WorkspaceError) throw err;
    throw new WorkspaceError(`${label}: not a readable tar file: ${(err as Error).message}`);
  }
  // Modes last, deepest first: a read-only directory could not have been filled.
  for (const [d, m] of dirModes.sort((a, b) => b[0].length - a[0].length)) await chmod(d, m);
}

async function noSymlinkOnTheWay(dir: string, parents: string[], label: string, raw: string): Promise<void> {
  let p = dir;
  for (const part of parents) {
    p = join(p, part);
    const st = await lstat(p).catch(() => undefined);
    if (st?.isSymbolicLink()) throw new WorkspaceError(`${label}: tar entry ${JSON.stringify(raw)} goes through the symlink ${posix.join(...parents.slice(0, parents.indexOf(part) + 1))}`);
    if (!st) return;
  }
}
