/**
 * gVisor as a session's choice, on real Docker: a spec that says `runsc` gets a container under gVisor's
 * kernel (not the host's) with the same lockdown, and the executor, lacking openat2 there, resolves file
 * paths with its walk. Needs dockerd to know runsc (`KEEL_GVISOR=1 npm run setup`); run by
 * scripts/test-runsc.sh beside the sandbox, snapshot and durability tests under runsc.
 */
import assert from 'node:assert/strict';
import { release } from 'node:os';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { createSandboxActivities } from '../../activities/sandbox';
import type { SandboxActivities } from '../../common/activities';
import { defaultImageTag, ensureImage, knownRuntimes, runtimeFix, SandboxRuntime } from '../../host';
import { scratchBlobs, uniqueId } from '../helpers/env';

const docker = new Docker();
const tag = defaultImageTag();
const sessions: string[] = [];
let runtime: SandboxRuntime;
let acts: SandboxActivities;

before(
  async () => {
    const known = await knownRuntimes(docker);
    assert.ok(known.includes('runsc'), `dockerd has no runsc (it has ${known.join(', ')}). Fix: ${runtimeFix('runsc')}`);
    await ensureImage(docker, tag);
    runtime = new SandboxRuntime(docker);
    // The worker's default stays runc: the session alone asks for gVisor.
    acts = createSandboxActivities({ runtime, blobs: scratchBlobs(), config: { hostId: 'test-runsc', defaultImage: tag, defaultRuntime: 'runc' } });
  },
  { timeout: 900_000 },
);

after(async () => {
  for (const id of sessions) await acts?.destroySandbox({ sessionId: id }).catch(() => undefined);
  await runtime?.close();
});

async function session(spec: { runtime?: string }) {
  const sessionId = uniqueId('test-runsc');
  sessions.push(sessionId);
  const handle = await acts.provisionSandbox({ sessionId, spec });
  const sh = async (command: string) => {
    const r = await acts.runTool({ sessionId, handle, call: { id: uniqueId('c'), name: 'shell', input: { command } } });
    assert.equal(r.ok, true, r.output);
    return r.output;
  };
  return { sessionId, handle, sh };
}

describe('sandbox.runtime = runsc', () => {
  it("runs under gVisor's kernel with the same lockdown, and says so in its runtime contract", async () => {
    const { handle, sh } = await session({ runtime: 'runsc' });
    const info = await docker.getContainer(handle.containerId).inspect();
    assert.equal(info.HostConfig.Runtime, 'runsc');
    assert.equal(info.HostConfig.NetworkMode, 'none');
    assert.equal(info.HostConfig.ReadonlyRootfs, true);
    assert.deepEqual(info.HostConfig.CapDrop, ['ALL']);
    assert.equal(handle.runtime?.ociRuntime, 'runsc');
    const kernel = (await sh('uname -r')).trim();
    assert.notEqual(kernel, release(), 'not the host kernel');
    assert.equal(kernel, '4.4.0', "gVisor's Sentry reports Linux 4.4.0");
    assert.equal(await sh('id -u; touch /etc/x 2>/dev/null || echo read-only'), '1000\nread-only\n');
  });

  it('the executor resolves file paths with its walk (gVisor has no openat2), and the file tools work', async () => {
    const { sessionId, handle } = await session({ runtime: 'runsc' });
    const ping = await runtime.client(handle.containerId).request('ping', {});
    assert.ok(ping.ok);
    assert.equal(ping.result.resolver, 'walk');
    const call = (name: string, input: unknown) => acts.runTool({ sessionId, handle, call: { id: uniqueId('c'), name, input } });
    assert.equal((await call('write_file', { path: 'a/b.txt', content: 'under gVisor\n' })).ok, true);
    assert.match((await call('read_file', { path: 'a/b.txt' })).output, /^\s*1\tunder gVisor\n$/);
    const magic = await call('write_file', { path: '/proc/1/fd/0', content: 'x' });
    assert.equal(magic.ok, false, 'no write through a magic link under the walk either');
  });

  it('a runc session on the same host is untouched by the choice', async () => {
    const { handle, sh } = await session({});
    assert.equal((await docker.getContainer(handle.containerId).inspect()).HostConfig.Runtime, 'runc');
    assert.equal((await sh('uname -r')).trim(), release());
    const ping = await runtime.client(handle.containerId).request('ping', {});
    assert.ok(ping.ok);
    assert.equal(ping.result.resolver, 'openat2');
  });
});
