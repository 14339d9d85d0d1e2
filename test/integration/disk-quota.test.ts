/**
 * Resources a command cannot take from the host: /workspace is a filesystem of its own (a loop-mounted
 * ext4 image of `SandboxSpec.diskMb`), and /dev/shm is a capped scratch space outside snapshots.
 * Real Docker and the real image; the worker's part (mount, loop devices) runs as root on this host.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { createSandboxActivities } from '../../activities/sandbox';
import type { SandboxActivities } from '../../common/activities';
import type { SandboxHandle } from '../../common/types';
import { defaultImageTag, diskPaths, ensureDisk, ensureImage, LABEL_DISK, listDisks, reapDisks, reapOrphans, removeDisk, SandboxRuntime, volumeName } from '../../host';
import { scratchBlobs, testRuntime, uniqueId } from '../helpers/env';

const docker = new Docker();
const tag = defaultImageTag();
const diskDir = mkdtempSync(join(tmpdir(), 'keel-disks-'));
const sessions: string[] = [];
let runtime: SandboxRuntime;
let acts: SandboxActivities;

before(
  async () => {
    await ensureImage(docker, tag);
    runtime = new SandboxRuntime(docker);
    acts = createSandboxActivities({ runtime, blobs: scratchBlobs(), config: { hostId: 'test-disk', defaultImage: tag, defaultRuntime: testRuntime(), diskDir } });
  },
  { timeout: 900_000 },
);

after(async () => {
  for (const id of sessions) await acts?.destroySandbox({ sessionId: id }).catch(() => undefined);
  await runtime?.close();
  rmSync(diskDir, { recursive: true, force: true });
});

function isMounted(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === path);
}

async function session(spec: { diskMb?: number } = {}) {
  const sessionId = uniqueId('test-disk');
  sessions.push(sessionId);
  const handle = await acts.provisionSandbox({ sessionId, spec });
  const tool = (name: string, input: unknown, snapshot?: { parent?: string }, h: SandboxHandle = handle) =>
    acts.runTool({ sessionId, handle: h, call: { id: uniqueId('c'), name, input }, ...(snapshot ? { snapshot } : {}) });
  const sh = (command: string, snapshot?: { parent?: string }, h?: SandboxHandle) => tool('shell', { command }, snapshot, h);
  return { sessionId, handle, tool, sh };
}

describe('/workspace disk quota', () => {
  it('a command that fills /workspace gets ENOSPC; the host holds at most the quota; the session and its snapshots go on', async () => {
    const { sessionId, handle, sh } = await session({ diskMb: 64 });
    assert.equal(handle.runtime?.limits.diskMb, 64);
    const { mount, image } = diskPaths(diskDir, volumeName(sessionId));
    assert.ok(isMounted(mount), 'its filesystem is mounted on the host');
    const vol = await docker.getVolume(volumeName(sessionId)).inspect();
    assert.equal(vol.Labels[LABEL_DISK], mount);

    // find, not ls or stat: Debian's gVisor rejects the statx flags coreutils passes (the runsc suite runs this too).
    const empty = await sh('find /workspace -mindepth 1 | wc -l; find /workspace -maxdepth 0 -printf "%u\\n"; df -m --output=size /workspace | tail -1');
    assert.equal(empty.ok, true, empty.output);
    const [entries, owner, size] = empty.output.trim().split(/\s+/);
    assert.equal(entries, '0', 'no lost+found or anything else in a fresh workspace');
    assert.equal(owner, 'keel');
    assert.ok(Number(size) <= 64 && Number(size) >= 50, `a 64 MiB filesystem, df says ${size}`);

    const first = await sh('echo keep > /workspace/keep.txt', {});
    assert.ok(first.snapshot);
    const fill = await sh('dd if=/dev/zero of=/workspace/fill bs=1M count=200 2>&1; echo exit=$?', { parent: first.snapshot.id });
    assert.match(fill.output, /No space left on device/);
    assert.match(fill.output, /exit=1/);
    // The host's disk holds the image's written blocks, never more than its size.
    assert.ok(statSync(image).blocks * 512 <= 66 * 1024 * 1024, `image uses ${statSync(image).blocks * 512} bytes`);
    assert.ok(fill.snapshot, 'the snapshot after a full disk is taken');

    const after = await sh('cat /workspace/keep.txt; rm /workspace/fill; echo more > /workspace/more.txt && echo written');
    assert.equal(after.output, 'keep\nwritten\n', 'the session goes on, and space comes back');

    // Restored into a new generation: the files, on a new filesystem of the same size.
    const g2 = await acts.provisionSandbox({ sessionId, spec: { diskMb: 64 }, generation: 2, restoreFrom: fill.snapshot.id });
    const restored = await sh('find /workspace -mindepth 1 -printf "%P\\n" | sort; du -m /workspace/fill | cut -f1', undefined, g2);
    assert.match(restored.output, /^fill\nkeep\.txt\n\d+\n$/);
    assert.ok(isMounted(diskPaths(diskDir, volumeName(sessionId, 2)).mount));
  });

  it('destroy removes the filesystem with the sandbox: unmounted, loop device detached, image gone', async () => {
    const { sessionId } = await session({ diskMb: 64 });
    const { mount, image } = diskPaths(diskDir, volumeName(sessionId));
    assert.ok(existsSync(image));
    const loops = () => execFileSync('losetup', ['-j', image], { encoding: 'utf8' }).trim();
    assert.notEqual(loops(), '', 'a loop device backs it');
    assert.deepEqual(await acts.destroySandbox({ sessionId }), { removed: true });
    assert.equal(isMounted(mount), false);
    assert.equal(existsSync(image), false);
    assert.equal(existsSync(mount), false);
    await assert.rejects(docker.getVolume(volumeName(sessionId)).inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
  });

  it('after a host reboot (container stopped, disk unmounted) bringing the container up mounts its disk first', async () => {
    const { sessionId, handle, sh } = await session({ diskMb: 64 });
    assert.equal((await sh('echo before > /workspace/b.txt && echo ok')).output, 'ok\n');
    const { mount } = diskPaths(diskDir, volumeName(sessionId));
    await docker.getContainer(handle.containerId).stop({ t: 1 });
    execFileSync('umount', [mount]);
    assert.equal(isMounted(mount), false);
    const again = await acts.provisionSandbox({ sessionId, spec: { diskMb: 64 } });
    assert.equal(again.containerId, handle.containerId, 'the same container, started again');
    assert.ok(isMounted(mount));
    assert.equal((await sh('cat /workspace/b.txt; df -m --output=size /workspace | tail -1 | tr -d " "', undefined, again)).output.split('\n')[0], 'before');
  });

  it('the reaper removes a filesystem whose volume is gone, and leaves the ones in use', async () => {
    const { sessionId } = await session({ diskMb: 64 });
    const leftover = `keel-ws-leftover-${uniqueId('x')}`;
    const mount = await ensureDisk(diskDir, leftover, 64);
    assert.ok(isMounted(mount));
    assert.equal(await reapDisks(docker, diskDir, 3600), 0, 'young ones are left alone');
    assert.equal(await reapDisks(docker, diskDir, 0), 1);
    assert.equal(isMounted(mount), false);
    const left = (await listDisks(diskDir)).map((d) => d.volume);
    assert.ok(!left.includes(leftover));
    assert.ok(left.includes(volumeName(sessionId)), 'the live session keeps its disk');
    // An ended session's sandbox goes with its disk through reapOrphans.
    await reapOrphans(docker, async (id) => id !== sessionId, { hostId: 'test-disk', diskDir });
    assert.ok(!(await listDisks(diskDir)).some((d) => d.volume === volumeName(sessionId)));
  });

  it("mkfs's lost+found is removed even when a killed worker left it behind; the sandbox user's own is kept", async (t) => {
    const volume = `keel-ws-lostfound-${uniqueId('x')}`;
    const mount = await ensureDisk(diskDir, volume, 64);
    t.after(() => removeDisk(mount));
    assert.ok(!existsSync(join(mount, 'lost+found')), 'a fresh disk has none');
    // As a worker killed after the mount, before the removal, leaves it (root's, 0700).
    mkdirSync(join(mount, 'lost+found'), { mode: 0o700 });
    assert.equal(await ensureDisk(diskDir, volume, 64), mount);
    assert.ok(!existsSync(join(mount, 'lost+found')), 'removed on the retry');
    // And after an unmount (an image made by an earlier attempt is not fresh): still removed.
    mkdirSync(join(mount, 'lost+found'), { mode: 0o700 });
    execFileSync('umount', [mount]);
    await ensureDisk(diskDir, volume, 64);
    assert.ok(!existsSync(join(mount, 'lost+found')));
    // One the sandbox user made (uid 1000) is theirs.
    mkdirSync(join(mount, 'lost+found'));
    chownSync(join(mount, 'lost+found'), 1000, 1000);
    await ensureDisk(diskDir, volume, 64);
    assert.ok(existsSync(join(mount, 'lost+found')));
  });

  it('refuses a size outside its bounds', async () => {
    await assert.rejects(acts.provisionSandbox({ sessionId: uniqueId('test-disk-bad'), spec: { diskMb: 1 } }), /sandbox\.diskMb must be a number from 64/);
  });
});

describe('/dev/shm', () => {
  it('is capped at 64 MiB and is scratch: a snapshot restores /workspace, never /dev/shm', async () => {
    const { sessionId, handle, sh } = await session();
    const info = await docker.getContainer(handle.containerId).inspect();
    assert.equal(info.HostConfig.ShmSize, 64 * 1024 * 1024);
    const fill = await sh('dd if=/dev/zero of=/dev/shm/big bs=1M count=100 2>&1; echo exit=$?; rm -f /dev/shm/big');
    assert.match(fill.output, /No space left on device/);
    const r = await sh('echo scratch > /dev/shm/s.txt && echo kept > /workspace/k.txt', {});
    assert.ok(r.snapshot);
    const g2 = await acts.provisionSandbox({ sessionId, generation: 2, restoreFrom: r.snapshot.id });
    const back = await sh('cat /workspace/k.txt; find /dev/shm -mindepth 1 | wc -l', undefined, g2);
    assert.equal(back.output, 'kept\n0\n');
  });
});
