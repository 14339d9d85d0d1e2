/**
 * A /workspace quota: each workspace volume is a filesystem of its own. A sparse ext4 image per sandbox
 * (session generation, or warm-pool container) is loop-mounted on the host under the disk directory, and
 * Docker gets a local volume that binds that mount. A command that fills it gets ENOSPC inside its own
 * filesystem; the host's disk holds at most the image's size. The image goes when its volume is removed
 * (the volume's `keel.disk` label names the mount), and the reaper removes images whose volume is gone.
 *
 * Needs root on the Docker host (mount, loop devices), with the worker on that host. `mount -o loop`
 * sets the loop device to detach itself at unmount. After a host reboot the mount is gone but the image
 * stays: bringing the container up again mounts it first ({@link ensureDisk}).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** On a workspace volume with its own filesystem: where that filesystem is mounted on the host. */
export const LABEL_DISK = 'keel.disk';
/** Where disk images and their mounts live when `KEEL_DISK_DIR` says nothing. */
export const DEFAULT_DISK_DIR = '/var/lib/keel/disks';
/** The sandbox user, who owns the new filesystem's root (commands write /workspace as 1000). */
const OWNER = '1000:1000';

/** A disk could not be made or mounted; the message names the fix. */
export class DiskError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DiskError';
  }
}

/** Mount point and image of the disk of volume `volume`. */
export function diskPaths(dir: string, volume: string): { mount: string; image: string } {
  return { mount: join(dir, volume), image: join(dir, `${volume}.img`) };
}

async function mounted(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  // Field 5 is the mount point, with spaces and the like octal-escaped.
  return info.split('\n').some((line) => line.split(' ')[4]?.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) === path);
}

async function sh(cmd: string, args: string[]): Promise<void> {
  try {
    await run(cmd, args);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new DiskError(`${cmd} ${args.join(' ')} failed: ${(e.stderr || e.message).trim()}`);
  }
}

/**
 * Make (once) and mount the disk of volume `volume`: `sizeMb` MiB, empty, owned by the sandbox user.
 * Idempotent: an existing image is mounted again if it is not; a crash before the image was complete
 * leaves only a `.tmp` file, started again here.
 */
export async function ensureDisk(dir: string, volume: string, sizeMb: number): Promise<string> {
  const { mount, image } = diskPaths(dir, volume);
  if (await mounted(mount)) {
    // A worker killed between the mount and the removal below left lost+found: remove it now.
    await dropLostFound(mount);
    return mount;
  }
  try {
    await mkdir(mount, { recursive: true, mode: 0o700 });
    if (!existsSync(image)) {
      const tmp = `${image}.tmp`;
      const f = await open(tmp, 'w', 0o600);
      await f.truncate(sizeMb * 1024 * 1024); // sparse: the host's disk holds only what is written
      await f.close();
      // No reserved blocks (-m 0): the sandbox user may fill all of it.
      await sh('mkfs.ext4', ['-q', '-F', '-m', '0', '-E', `root_owner=${OWNER}`, tmp]);
      await rename(tmp, image);
    }
    await sh('mount', ['-o', 'loop,nosuid,nodev', image, mount]);
    // Also when the image was made by an earlier attempt: a worker killed between its rename and here left it.
    await dropLostFound(mount);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new DiskError(
      `cannot make the /workspace filesystem of ${volume} in ${dir} (${why}). It needs root on the Docker host ` +
        '(mount and loop devices): run the sandbox-host worker there as root, or set KEEL_DISK_QUOTA=off for no /workspace quota',
    );
  }
  return mount;
}

/**
 * mkfs.ext4 makes lost+found, root's, mode 0700. Docker copies the image's /workspace only into an empty
 * volume, snapshots must not see it, and the executor cannot empty /workspace for a restore while it is
 * there. Only root's (mkfs's), and only empty: a lost+found the sandbox user made is theirs.
 */
async function dropLostFound(mount: string): Promise<void> {
  const path = join(mount, 'lost+found');
  const st = await lstat(path).catch(() => undefined);
  if (st?.isDirectory() && st.uid === 0) await rmdir(path).catch(() => undefined);
}

/** Unmount and delete a disk (its loop device detaches itself). Idempotent. `mount` must be a disk of `dir`. */
export async function removeDisk(mount: string): Promise<void> {
  if (!mount.startsWith('/') || basename(mount).startsWith('.') || !existsSync(dirname(mount))) return;
  if (await mounted(mount)) await sh('umount', [mount]);
  await rm(`${mount}.img`, { force: true });
  await rm(`${mount}.img.tmp`, { force: true });
  await rmdir(mount).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/** The volume names of the disks in `dir`, each with the time its image was last changed (ms since the epoch). */
export async function listDisks(dir: string): Promise<Array<{ volume: string; mount: string; changedMs: number }>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: Array<{ volume: string; mount: string; changedMs: number }> = [];
  for (const name of names) {
    const m = /^(.+)\.img(\.tmp)?$/.exec(name);
    if (!m?.[1]) continue;
    const s = await stat(join(dir, name)).catch(() => undefined);
    if (s) out.push({ volume: m[1], mount: join(dir, m[1]), changedMs: s.mtimeMs });
  }
  return out;
}
