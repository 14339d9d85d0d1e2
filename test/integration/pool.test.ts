/**
 * The warm pool on real Docker: claimed containers behave like created ones,
 * are never shared, are replaced, and go away with their session or the worker.
 *
 *   node --import tsx --test test/integration/pool.test.ts
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { DirBlobStore } from '../../blobs';
import { createSandboxActivities } from '../../activities/sandbox';
import { defaultImageTag, ensureImage, listManagedContainers, reapOrphans, reapStoppedPool, SandboxRuntime, WarmPool } from '../../host';
import { type SandboxActivities } from '../../common/activities';
import { claimVolumeName, DEFAULT_DISK_DIR, diskPaths, poolOptions } from '../../host';
import { ensurePoolVolume } from '../../host/inventory';
import type { SandboxHandle, ToolResult } from '../../common/types';

const docker = new Docker();
const tag = defaultImageTag();
const run = `${process.pid}-${Date.now().toString(36)}`;
const hostId = `pool-test-${run}`;
const sessions = new Set<string>();
const blobDir = mkdtempSync(join(tmpdir(), 'keel-pool-blobs-'));

let runtime: SandboxRuntime;
let acts: SandboxActivities;
let pool: WarmPool;

function sid(name: string): string {
  const id = `pool-${name}-${run}`;
  sessions.add(id);
  return id;
}

async function sh(sessionId: string, handle: SandboxHandle, command: string, snapshot?: { parent?: string }): Promise<ToolResult> {
  return acts.runTool({ sessionId, handle, call: { id: `c-${Math.random()}`, name: 'shell', input: { command } }, ...(snapshot ? { snapshot } : {}) });
}

async function poolContainers(): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`keel.pool=${hostId}`] } });
}

const gone = (e: { statusCode?: number }) => e.statusCode === 404;

before(
  async () => {
    await ensureImage(docker, tag, (line) => console.error(`[image] ${line}`));
    runtime = new SandboxRuntime(docker);
    pool = new WarmPool(runtime, { hostId, image: tag, size: 2, diskDir: DEFAULT_DISK_DIR });
    acts = createSandboxActivities({ runtime, blobs: new DirBlobStore(blobDir), config: { hostId, defaultImage: tag }, pools: [pool] });
    await pool.ready();
  },
  { timeout: 900_000 },
);

after(async () => {
  for (const id of sessions) await acts?.destroySandbox({ sessionId: id }).catch(() => undefined);
  await runtime?.close();
  rmSync(blobDir, { recursive: true, force: true });
});

describe('warm pool', () => {
  it('claims an idle container with the lockdown, the session name and a working workspace', async () => {
    const idle = pool.idleIds();
    assert.equal(idle.length, 2);
    const sessionId = sid('claim');
    const handle = await acts.provisionSandbox({ sessionId });
    assert.equal(handle.containerId, idle[0]);
    const info = await docker.getContainer(handle.containerId).inspect();
    assert.equal(info.Name, `/keel-${sessionId}`);
    assert.equal(info.Config.Labels['keel.pool'], hostId);
    assert.equal(info.Config.Labels['keel.session'], undefined);
    assert.equal(info.HostConfig.NetworkMode, 'none');
    assert.equal(info.HostConfig.ReadonlyRootfs, true);
    assert.deepEqual(info.HostConfig.CapDrop, ['ALL']);
    assert.deepEqual(info.HostConfig.SecurityOpt, ['no-new-privileges']);
    assert.equal(info.HostConfig.Memory, 1024 * 1024 * 1024);
    assert.equal(info.HostConfig.PidsLimit, 256);
    assert.deepEqual(info.HostConfig.CapAdd, ['SETUID', 'SETGID', 'SETPCAP']);
    assert.equal(info.Config.User, '0:0', 'the executor starts as root; commands run as 1000 (test/security/)');
    assert.deepEqual(info.HostConfig.Binds ?? [], []);
    // The session's lookups find it, under its session and generation.
    const mine = (await listManagedContainers(docker)).filter((c) => c.sessionId === sessionId);
    assert.deepEqual(mine.map((c) => [c.id, c.generation]), [[handle.containerId, 1]]);
    // Idempotent: provisioning again returns the same container.
    assert.equal((await acts.provisionSandbox({ sessionId })).containerId, handle.containerId);

    assert.equal((await sh(sessionId, handle, 'cd /workspace && echo a > f && export K=v && cd /tmp')).ok, true);
    assert.equal((await sh(sessionId, handle, 'cat /workspace/f; echo $K; pwd; id -u')).output, 'a\nv\n/tmp\n1000\n');
  });

  it('never gives one container to two sessions, and the executor refuses a second claim', async () => {
    await pool.ready();
    const ids = ['a', 'b', 'c', 'd'].map((n) => sid(`many-${n}`));
    const handles = await Promise.all(ids.map((sessionId) => acts.provisionSandbox({ sessionId })));
    assert.equal(new Set(handles.map((h) => h.containerId)).size, 4);
    // Four sessions, two pooled containers: two were claimed, two created cold. None takes another claim.
    const codes: string[] = [];
    for (const h of handles) {
      const other = await runtime.client(h.containerId).request('claim', { session: 'someone-else', generation: 1 }, { timeoutMs: 5000 });
      assert.ok(!other.ok, JSON.stringify(other));
      codes.push(other.error.code);
    }
    assert.deepEqual(codes.sort(), ['AlreadyClaimed', 'AlreadyClaimed', 'NotPooled', 'NotPooled']);
    for (const [i, h] of handles.entries()) {
      assert.equal((await sh(ids[i]!, h, 'echo $((1+1))')).output, '2\n');
    }
  });

  it('never gives a pool container (runc) to a session that asks for another runtime', async () => {
    await pool.ready();
    const idle = pool.idleIds();
    const sessionId = sid('other-runtime');
    // A runtime dockerd lacks: served from the pool, provisioning would have succeeded under runc.
    await assert.rejects(acts.provisionSandbox({ sessionId, spec: { runtime: 'keel-no-such-runtime' } }), (err: Error & { type?: string }) => {
      assert.equal(err.type, 'Sandbox.RuntimeMissing', err.message);
      return true;
    });
    assert.deepEqual(pool.idleIds(), idle, 'no pool container was claimed');
  });

  it('refills in the background with new containers', async () => {
    const before = new Set(pool.idleIds());
    await acts.provisionSandbox({ sessionId: sid('refill') });
    const t0 = Date.now();
    await pool.ready();
    const now = pool.idleIds();
    assert.equal(now.length, 2);
    assert.ok(now.some((id) => !before.has(id)), 'a new container joined');
    assert.ok(Date.now() - t0 < 10_000);
  });

  it('snapshots and restores a claimed container; a restore (generation 2) may claim too', async () => {
    const sessionId = sid('restore');
    const h1 = await acts.provisionSandbox({ sessionId });
    const r = await sh(sessionId, h1, 'mkdir -p src && echo hello > src/x.txt && cd src && export MODE=warm', {});
    assert.ok(r.snapshot, 'a snapshot was taken');
    await pool.ready();
    const next = pool.idleIds()[0];
    const h2 = await acts.provisionSandbox({ sessionId, generation: 2, restoreFrom: r.snapshot.id });
    assert.equal(h2.containerId, next);
    assert.equal((await sh(sessionId, h2, 'cat x.txt; echo $MODE; pwd')).output, 'hello\nwarm\n/workspace/src\n');
    assert.equal((await docker.getContainer(h2.containerId).inspect()).Name, `/keel-${sessionId}-g2`);
    // Older generations go; the new one stays.
    await acts.destroySandbox({ sessionId, belowGeneration: 2 });
    await assert.rejects(docker.getContainer(h1.containerId).inspect(), gone);
    assert.equal((await docker.getContainer(h2.containerId).inspect()).State.Running, true);
  });

  it('destroy removes the claimed container, its workspace volume and its claim record', async () => {
    const sessionId = sid('destroy');
    const h = await acts.provisionSandbox({ sessionId });
    const info = await docker.getContainer(h.containerId).inspect();
    const volume = info.Mounts.find((m) => m.Destination === '/workspace')?.Name;
    assert.match(volume ?? '', /^keel-ws-pool-/);
    assert.ok(existsSync(diskPaths(DEFAULT_DISK_DIR, volume!).image), 'a pool container gets a /workspace filesystem too');
    assert.equal(h.runtime?.limits.diskMb, 2048);
    assert.deepEqual(await acts.destroySandbox({ sessionId }), { removed: true });
    await assert.rejects(docker.getContainer(h.containerId).inspect(), gone);
    await assert.rejects(docker.getVolume(volume!).inspect(), gone);
    assert.equal(existsSync(diskPaths(DEFAULT_DISK_DIR, volume!).image), false, 'its /workspace filesystem went with it');
    await assert.rejects(docker.getVolume(claimVolumeName(h.containerId)).inspect(), gone);
    assert.deepEqual(await acts.destroySandbox({ sessionId }), { removed: false });
  });

  it('reapOrphans attributes claimed containers to their session', async () => {
    const sessionId = sid('orphan');
    const h = await acts.provisionSandbox({ sessionId });
    const reaped = await reapOrphans(docker, async (id) => id !== sessionId);
    assert.deepEqual(reaped, [sessionId]);
    await assert.rejects(docker.getContainer(h.containerId).inspect(), gone);
  });

  it('an unclaimed container whose lease runs out stops, and reapStoppedPool removes it', async () => {
    const token = `lease${Date.now().toString(36)}`;
    const volume = await ensurePoolVolume(docker, token, hostId);
    const c = await docker.createContainer(poolOptions({ token, hostId, image: tag, leaseSec: 1 }));
    await c.start();
    let state = '';
    for (let i = 0; i < 50 && state !== 'exited'; i++) {
      await new Promise((r) => setTimeout(r, 200));
      state = (await c.inspect()).State.Status;
    }
    assert.equal(state, 'exited');
    assert.equal(await reapStoppedPool(docker, hostId, 0), 1);
    await assert.rejects(c.inspect(), gone);
    await assert.rejects(docker.getVolume(volume).inspect(), gone);
  });

  it('worker close removes the idle pool containers and keeps claimed ones', async () => {
    const sessionId = sid('keep');
    const h = await acts.provisionSandbox({ sessionId });
    await pool.ready();
    const idle = pool.idleIds();
    await runtime.close();
    for (const id of idle) await assert.rejects(docker.getContainer(id).inspect(), gone);
    const left = (await poolContainers()).map((c) => c.Id);
    assert.ok(left.includes(h.containerId));
    assert.ok(!left.some((id) => idle.includes(id)));
    for (const id of sessions) await acts.destroySandbox({ sessionId: id });
    assert.deepEqual(await poolContainers(), []);
    const vols = await docker.listVolumes({ filters: { label: [`keel.pool=${hostId}`] } });
    assert.deepEqual(vols.Volumes ?? [], []);
  });
});
