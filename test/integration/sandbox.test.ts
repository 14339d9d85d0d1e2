/**
 * Sandbox activities against a real Docker daemon and the real sandbox image
 * (built once by `ensureImage`, cached afterwards). No mocks.
 *
 *   node --import tsx --test test/integration/sandbox.test.ts
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import Docker from 'dockerode';
import { readBlob } from '../../blobs';
import { scratchBlobs, testRuntime } from '../helpers/env';
import { rootExec } from '../security/helpers';
import type { SandboxHandle, ToolResult } from '../../common/types';
import { createSandboxActivities } from '../../activities/sandbox';
import { defaultImageTag, ensureImage, ExecutorClient, listManagedContainers, reapOrphans, SandboxRuntime } from '../../host';
import { type SandboxActivities } from '../../common/activities';
import { volumeName } from '../../host';
import { gvisorHostPids } from '../../host/lockdown';

const docker = new Docker();
const tag = defaultImageTag();
/** What the host sends with every shell request (activities/sandbox/tool-ops.ts); the executor requires them. */
const SHELL_ARGS = { timeoutSec: 30, maxOutput: 16_000, storeBytes: 10 * 1024 * 1024 };
const run = `${process.pid}-${Date.now().toString(36)}`;
const sessionId = `test-sbx-${run}`;
const created = new Set<string>([sessionId]);
const blobs = scratchBlobs();

let runtime: SandboxRuntime;
let acts: SandboxActivities;
let handle: SandboxHandle;
let seq = 0;

function tool(name: string, input: unknown, id = `call-${++seq}`): Promise<ToolResult> {
  return acts.runTool({ sessionId, handle, call: { id, name, input } });
}

async function sh(command: string, timeoutSec?: number): Promise<ToolResult> {
  return tool('shell', timeoutSec ? { command, timeoutSec } : { command });
}

async function expectFailure(p: Promise<unknown>, type: string): Promise<ApplicationFailure> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ApplicationFailure, `expected ApplicationFailure ${type}, got ${String(err)}`);
    assert.equal(err.type, type, err.message);
    return err;
  }
  assert.fail(`expected ${type}, but it succeeded`);
}

before(
  async () => {
    await ensureImage(docker, tag, (line) => console.error(`[image] ${line}`));
    runtime = new SandboxRuntime(docker);
    acts = createSandboxActivities({ runtime, blobs, config: { hostId: 'test-host', defaultImage: tag, defaultRuntime: testRuntime() } });
    handle = await acts.provisionSandbox({ sessionId, spec: { memoryMb: 512, pidsLimit: 128 } });
  },
  { timeout: 900_000 },
);

after(async () => {
  for (const id of created) await acts?.destroySandbox({ sessionId: id }).catch(() => undefined);
  runtime?.close();
});

describe('provisioning', () => {
  it('returns a handle for this host and is idempotent', async () => {
    assert.equal(handle.hostId, 'test-host');
    assert.equal(handle.hostQueue, 'keel-sandbox-test-host');
    assert.equal(handle.image, tag);
    const again = await acts.provisionSandbox({ sessionId, spec: { memoryMb: 512, pidsLimit: 128 } });
    assert.equal(again.containerId, handle.containerId);
    const mine = (await listManagedContainers(docker)).filter((c) => c.sessionId === sessionId);
    assert.equal(mine.length, 1);
    assert.equal(mine[0]?.state, 'running');
  });

  it('applies limits, labels and the lockdown', async () => {
    const info = await docker.getContainer(handle.containerId).inspect();
    assert.equal(info.Name, `/keel-${sessionId}`);
    assert.equal(info.HostConfig.Memory, 512 * 1024 * 1024);
    // Under gVisor the host cgroup also holds gVisor's own kernel threads and stubs (host/lockdown.ts).
    assert.equal(info.HostConfig.PidsLimit, testRuntime() === 'runsc' ? gvisorHostPids(128) : 128);
    assert.equal(info.HostConfig.NanoCpus, 1e9);
    assert.equal(info.HostConfig.NetworkMode, 'none');
    assert.equal(info.HostConfig.Runtime, testRuntime());
    assert.equal(handle.runtime?.ociRuntime, testRuntime());
    assert.equal(info.HostConfig.ReadonlyRootfs, true);
    assert.deepEqual(info.HostConfig.CapDrop, ['ALL']);
    assert.deepEqual(info.HostConfig.CapAdd, ['SETUID', 'SETGID', 'SETPCAP']);
    assert.deepEqual(info.HostConfig.SecurityOpt, ['no-new-privileges']);
    assert.equal(info.Config.User, '0:0', 'the executor starts as root; commands run as 1000 (see the security tests)');
    assert.equal(info.Config.Labels['keel.session'], sessionId);
    assert.equal(info.Config.Labels['keel.managed'], 'true');
    assert.equal(info.Config.Labels['keel.host'], 'test-host');
    assert.deepEqual(info.HostConfig.Binds ?? [], []);
    const mounts = info.Mounts.map((m) => `${m.Type}:${m.Name ?? ''}:${m.Destination}`);
    assert.deepEqual(mounts, [`volume:${volumeName(sessionId)}:/workspace`]);
  });

  it('fails ImageMissing (non-retryable) with build instructions', async () => {
    const id = `test-noimg-${run}`;
    created.add(id);
    const err = await expectFailure(acts.provisionSandbox({ sessionId: id, spec: { image: 'keel-sandbox:nosuchimage' } }), 'Sandbox.ImageMissing');
    assert.equal(err.nonRetryable, true);
    assert.match(err.message, /sandbox\/build\.sh keel-sandbox:nosuchimage/);
  });

  it('fails RuntimeMissing (non-retryable) naming the fix when dockerd has no such runtime', async () => {
    const id = `test-noruntime-${run}`;
    created.add(id);
    const err = await expectFailure(acts.provisionSandbox({ sessionId: id, spec: { runtime: 'keel-no-such-runtime' } }), 'Sandbox.RuntimeMissing');
    assert.equal(err.nonRetryable, true);
    assert.match(err.message, /no runtime "keel-no-such-runtime" \(it has: .*runc/);
    assert.match(err.message, /daemon\.json.*SIGHUP/);
    assert.equal((await listManagedContainers(docker)).filter((c) => c.sessionId === id).length, 0, 'no container was made');
    const gvisor = await expectFailure(acts.provisionSandbox({ sessionId: id, spec: { runtime: 'runsc ; rm' } }), 'Sandbox.BadRequest');
    assert.match(gvisor.message, /sandbox\.runtime must be a Docker runtime name/);
  });

  it('fails DockerUnavailable (retryable) when the daemon is unreachable', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keel-nodocker-'));
    const offline = createSandboxActivities({ runtime: new SandboxRuntime(new Docker({ socketPath: join(dir, 'docker.sock') })), blobs: scratchBlobs(), config: { defaultImage: tag } });
    const err = await expectFailure(offline.provisionSandbox({ sessionId: `test-offline-${run}` }), 'Sandbox.DockerUnavailable');
    assert.equal(err.nonRetryable, false);
    assert.match(err.message, /DOCKER_HOST/);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('shell', () => {
  it('keeps cwd and exported variables between calls', async () => {
    const first = await sh('cd /tmp && export FOO=bar');
    assert.equal(first.ok, true, first.output);
    const second = await sh('pwd; echo $FOO');
    assert.equal(second.ok, true);
    assert.equal(second.output, '/tmp\nbar\n');
    await sh('cd /workspace && unset FOO');
    assert.equal((await sh('pwd; echo "[${FOO-unset}]"')).output, '/workspace\n[unset]\n');
  });

  it('falls back to /workspace, and says so, when the saved directory was removed', async () => {
    await sh('mkdir -p /workspace/tmpdir && cd /workspace/tmpdir && rmdir /workspace/tmpdir');
    const r = await sh('pwd');
    assert.equal(r.output, '[keel: the previous working directory /workspace/tmpdir no longer exists; now in /workspace]\n/workspace\n');
    assert.equal((await sh('pwd')).output, '/workspace\n');
  });

  it('keeps values with quotes, newlines and spaces intact', async () => {
    await sh(`export V='a "b" $c'"'"'d
line 2'`);
    assert.equal((await sh('printf "%s|" "$V"')).output, 'a "b" $c\'d\nline 2|');
  });

  it('picks up shell state saved by an older executor (an `export -p` script), once', async () => {
    // `exec true` replaces bash before its EXIT trap, so this call saves no state of its own.
    const legacy = await sh(
      "export OLD_VAR='from old'; rm -f ~/.keel/shell-env; { export -p; printf '__keel_cwd=%q\\n' /tmp; } > ~/.keel/shell-state; exec true",
    );
    assert.equal(legacy.ok, true, legacy.output);
    assert.equal((await sh('echo "$OLD_VAR"; pwd')).output, 'from old\n/tmp\n');
    assert.equal((await sh('test -e ~/.keel/shell-state && echo legacy || echo gone; echo "$OLD_VAR"')).output, 'gone\nfrom old\n');
    await sh('cd /workspace && unset OLD_VAR');
  });

  it('keeps state when the command removes the state file', async () => {
    await sh('export KEEP=1');
    await sh('rm -rf ~/.keel'); // the state it ends with is the state it started with
    assert.equal((await sh('echo $KEEP')).output, '1\n');
    await sh('unset KEEP');
  });

  it('combines stdout and stderr in order and reports non-zero exits', async () => {
    const r = await sh('echo one; echo two >&2; echo three; exit 3');
    assert.equal(r.ok, false);
    assert.equal(r.exitCode, 3);
    assert.equal(r.error, 'NonZeroExit');
    assert.equal(r.output, 'one\ntwo\nthree\n[exit code 3]');
    assert.equal(typeof r.durationMs, 'number');
  });

  it('does not read the protocol stdin', async () => {
    const r = await sh('cat; echo after', 10);
    assert.equal(r.ok, true);
    assert.equal(r.output, 'after\n');
  });

  it('kills the whole process group on timeout', async () => {
    const t0 = Date.now();
    const r = await sh('(sleep 100; echo never) & echo $! > /tmp/bg.pid; sleep 100', 2);
    assert.equal(r.ok, false);
    assert.equal(r.error, 'Timeout');
    assert.equal(r.exitCode, 124);
    assert.match(r.output, /timed out after 2s/);
    assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
    const check = await sh('kill -0 "$(cat /tmp/bg.pid)" 2>/dev/null && echo alive || echo dead; pgrep -x sleep || echo no-sleep');
    assert.equal(check.output, 'dead\nno-sleep\n');
  });

  it('keeps a huge output whole in the blob store and only a preview in the result', async () => {
    const r = await sh('seq 1 100000');
    assert.equal(r.ok, true);
    // seq 1 100000 prints 588895 characters: stored whole, by reference.
    assert.ok(r.outputRef, 'stored by reference');
    const whole = (await readBlob(blobs, r.outputRef.sha)).toString('utf8');
    assert.equal(whole.length, 588895);
    assert.ok(whole.startsWith('1\n2\n3\n') && whole.endsWith('99999\n100000\n'));
    assert.ok(r.output.startsWith('1\n2\n3\n') && r.output.endsWith('99999\n100000\n'), 'the preview keeps head and tail');
    assert.ok(r.output.length < 400, `preview length ${r.output.length}`);
  });

  it('returns while a background job keeps running', async () => {
    const t0 = Date.now();
    const r = await sh('sleep 30 & echo started');
    assert.equal(r.output, 'started\n');
    assert.ok(Date.now() - t0 < 5000);
    await sh('pkill -x sleep || true');
  });

  it('runs concurrent calls in parallel', async () => {
    const t0 = Date.now();
    const results = await Promise.all([1, 2, 3, 4, 5].map((i) => sh(`sleep 1; echo n${i}`)));
    const elapsed = Date.now() - t0;
    assert.deepEqual(results.map((r) => r.output), ['n1\n', 'n2\n', 'n3\n', 'n4\n', 'n5\n']);
    assert.ok(elapsed < 4000, `5 x sleep 1 took ${elapsed} ms`);
  });
});

describe('idempotency', () => {
  it('runs a repeated key once and returns the recorded result', async () => {
    const first = await tool('shell', { command: 'echo x >> /workspace/once.txt; wc -l < /workspace/once.txt' }, 'same-key');
    const second = await tool('shell', { command: 'echo x >> /workspace/once.txt; wc -l < /workspace/once.txt' }, 'same-key');
    assert.equal(first.output, '1\n');
    assert.deepEqual(second, first);
    assert.equal((await sh('wc -l < /workspace/once.txt')).output, '1\n');
  });

  it('makes a concurrent repeat wait for the running call', async () => {
    const input = { command: 'sleep 1; echo y >> /workspace/twice.txt; echo done' };
    const [a, b] = await Promise.all([tool('shell', input, 'concurrent-key'), tool('shell', input, 'concurrent-key')]);
    assert.equal(a.output, 'done\n');
    assert.equal(b.output, 'done\n');
    assert.equal((await sh('wc -l < /workspace/twice.txt')).output, '1\n');
  });
});

describe('files', () => {
  it('writes, reads with line numbers, edits and lists', async () => {
    const w = await tool('write_file', { path: 'src/a.txt', content: 'alpha\nbeta\ngamma\n' });
    assert.equal(w.ok, true);
    assert.equal(w.output, 'Wrote 17 bytes to /workspace/src/a.txt.');
    const r = await tool('read_file', { path: '/workspace/src/a.txt' });
    assert.equal(r.output, '     1\talpha\n     2\tbeta\n     3\tgamma\n');
    const part = await tool('read_file', { path: 'src/a.txt', offset: 2, limit: 1 });
    assert.equal(part.output, '     2\tbeta\n[lines 2-2 of 3; use offset and limit to read others]');
    const e = await tool('edit_file', { path: 'src/a.txt', old_string: 'beta', new_string: 'BETA' });
    assert.equal(e.ok, true, e.output);
    assert.equal((await sh('cat src/a.txt')).output, 'alpha\nBETA\ngamma\n');
    const flat = await tool('list_files', {});
    assert.ok(flat.output.split('\n').includes('src/'), flat.output);
    assert.ok(!flat.output.split('\n').includes('src/a.txt'));
    const deep = await tool('list_files', { path: '/workspace', recursive: true });
    const entries = deep.output.split('\n');
    assert.ok(entries.includes('src/') && entries.includes('src/a.txt'), deep.output);
    assert.deepEqual(entries, [...entries].sort());
  });

  it('reports NoMatch and Ambiguous edits as tool errors', async () => {
    await tool('write_file', { path: 'dup.txt', content: 'same\nsame\n' });
    const none = await tool('edit_file', { path: 'dup.txt', old_string: 'absent', new_string: 'x' });
    assert.equal(none.ok, false);
    assert.equal(none.error, 'NoMatch');
    const two = await tool('edit_file', { path: 'dup.txt', old_string: 'same', new_string: 'x' });
    assert.equal(two.ok, false);
    assert.equal(two.error, 'Ambiguous');
    assert.match(two.output, /occurs 2 times/);
    assert.equal((await sh('cat dup.txt')).output, 'same\nsame\n');
  });

  it('reports NotFound, IsADirectory and Binary', async () => {
    assert.equal((await tool('read_file', { path: 'nope.txt' })).error, 'NotFound');
    assert.equal((await tool('read_file', { path: '/workspace' })).error, 'IsADirectory');
    await sh("printf '\\xff\\xfe\\x00' > bin.dat");
    assert.equal((await tool('read_file', { path: 'bin.dat' })).error, 'Binary');
    assert.equal((await tool('list_files', { path: 'nowhere' })).error, 'NotFound');
  });

  it('turns invalid calls into results, not exceptions', async () => {
    const bad = await tool('shell', { command: '' });
    assert.equal(bad.ok, false);
    assert.equal(bad.error, 'InvalidArguments');
    assert.equal((await tool('rm_rf', {})).error, 'UnknownTool');
  });
});

describe('security', () => {
  it('runs commands as uid/gid 1000 with no groups, no capabilities and no-new-privileges; the executor is root with CAP_SETUID and CAP_SETGID only', async () => {
    assert.equal((await sh('id -u; id -g; id -G')).output, '1000\n1000\n1000\n');
    const gvisor = testRuntime() === 'runsc';
    const fields = "awk '/^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):/ {$1=$1; print}'";
    // gVisor's /proc/<pid>/status has no CapAmb and NoNewPrivs lines: there, no-new-privileges is asked of prctl.
    const status = (text: string) => (gvisor ? text.replace('CapAmb: 0000000000000000\nNoNewPrivs: 1\n', '') : text);
    assert.equal(
      (await sh(`${fields} /proc/self/status`)).output,
      status('Uid: 1000 1000 1000 1000\nGid: 1000 1000 1000 1000\nGroups:\nCapInh: 0000000000000000\nCapPrm: 0000000000000000\nCapEff: 0000000000000000\nCapBnd: 0000000000000000\nCapAmb: 0000000000000000\nNoNewPrivs: 1\n'),
    );
    assert.equal((await sh('python3 -c "import ctypes; print(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))"')).output, '1\n', 'PR_GET_NO_NEW_PRIVS');
    // The executor (PID 1): root in its real, effective and saved uid; the fourth (fs) uid is its main thread's, 1000.
    // CapEff c0 = CAP_SETGID (6) | CAP_SETUID (7); the bounding set is empty, so nothing it starts can gain one.
    // gVisor has no setfsuid: there each thread's effective ids are 1000 instead (real and saved stay 0), which
    // leaves its effective set empty until it switches back to 0 for its own state (privileges.py).
    assert.equal(
      (await sh(`${fields} /proc/1/status`)).output,
      gvisor
        ? 'Uid: 0 1000 0 1000\nGid: 0 1000 0 1000\nGroups:\nCapInh: 0000000000000000\nCapPrm: 00000000000000c0\nCapEff: 0000000000000000\nCapBnd: 0000000000000000\n'
        : 'Uid: 0 0 0 1000\nGid: 0 0 0 1000\nGroups:\nCapInh: 0000000000000000\nCapPrm: 00000000000000c0\nCapEff: 00000000000000c0\nCapBnd: 0000000000000000\nCapAmb: 0000000000000000\nNoNewPrivs: 1\n',
    );
  });

  it("cannot reach the executor's protocol stdin and stdout through /proc", async () => {
    // find, not ls: Debian's gVisor rejects the statx flags coreutils' ls passes (docs/security.md).
    const r = await sh('cat /proc/1/cmdline | tr "\\0" " "; echo; find /proc/1/fd/ -mindepth 1 2>&1 | head -1; echo forged > /proc/1/fd/1 2>&1 || echo refused');
    const [cmdline, listing, write] = r.output.trim().split('\n');
    assert.match(cmdline!, /executor\.py/, 'the executor is PID 1');
    // gVisor (Debian's 2022 build) lets any process list another's fds; opening them is still refused.
    assert.match(listing!, testRuntime() === 'runsc' ? /^\/proc\/1\/fd\/0$/ : /Permission denied/);
    assert.match(write!, /Permission denied|refused/);
  });

  it('reaps orphaned background processes (the executor is PID 1)', async () => {
    await sh('(sleep 0.2 &) ; (true &)');
    await new Promise((r) => setTimeout(r, 2500));
    const zombies = await sh("awk '$3 == \"Z\"' /proc/[0-9]*/stat 2>/dev/null | wc -l");
    assert.equal(zombies.output.trim(), '0');
  });

  it('has no network interface besides lo', async () => {
    const r = await sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    assert.equal(r.output, 'lo\n');
  });

  it('has a read-only root and no Docker socket', async () => {
    const usr = await sh('touch /usr/keel-test');
    assert.equal(usr.ok, false);
    // gVisor checks permissions before the mount's read-only flag, so there uid 1000 hears EACCES; the mount is ro in both.
    assert.match(usr.output, testRuntime() === 'runsc' ? /Permission denied/ : /Read-only file system/);
    assert.match((await sh("awk '$2 == \"/\" {print $4}' /proc/mounts")).output, /^ro,/);
    assert.equal((await sh('test -e /var/run/docker.sock && echo present || echo absent')).output, 'absent\n');
    assert.equal((await sh('touch /workspace/w /tmp/t $HOME/h && echo writable')).output, 'writable\n');
  });
});

describe('executor client', () => {
  it('a new runtime (a new worker process) talks to the same executor', async () => {
    await sh('export FROM_OLD=1');
    const fresh = new SandboxRuntime(docker);
    try {
      const acts2 = createSandboxActivities({ runtime: fresh, blobs: scratchBlobs(), config: { hostId: 'test-host', defaultImage: tag } });
      const r = await acts2.runTool({ sessionId, handle, call: { id: `fresh-${run}`, name: 'shell', input: { command: 'echo $FROM_OLD' } } });
      assert.equal(r.output, '1\n');
    } finally {
      fresh.close();
    }
  });

  it('survives the attaching process being SIGKILLed mid-call; the retry waits and does not re-run', async () => {
    const key = `killed-${run}`;
    const dir = mkdtempSync(join(tmpdir(), 'keel-kill-'));
    const script = join(dir, 'attach.ts');
    const client = resolve(__dirname, '../../host/executor-client.ts');
    writeFileSync(
      script,
      `import Docker from ${JSON.stringify(require.resolve('dockerode'))};
import { ExecutorClient } from ${JSON.stringify(client)};
const c = new ExecutorClient(new Docker(), ${JSON.stringify(handle.containerId)});
void c.request('shell', { command: 'touch /workspace/killed.started; sleep 2; echo k >> /workspace/killed.txt; echo finished', ...${JSON.stringify(SHELL_ARGS)} }, { key: ${JSON.stringify(key)} });
setInterval(() => {}, 1000);
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: resolve(__dirname, '../..'), stdio: 'inherit' });
    try {
      // Wait until the command is running, then kill the "worker" without warning.
      for (let i = 0; i < 100; i++) {
        if ((await sh('test -e /workspace/killed.started && echo running || echo idle')).output === 'running\n') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      child.kill('SIGKILL');
      const c = new ExecutorClient(docker, handle.containerId);
      try {
        // The same key with the same request waits for the running call and gets its answer.
        const same = { command: 'touch /workspace/killed.started; sleep 2; echo k >> /workspace/killed.txt; echo finished', ...SHELL_ARGS };
        const again = await c.request('shell', same, { key, timeoutMs: 20_000 });
        assert.equal(again.ok, true);
        assert.equal(again.replayed, true);
        assert.equal(again.ok && again.result.output, 'finished\n');
        // The same key with another request is refused, and runs nothing.
        const other = await c.request('shell', { command: 'echo SHOULD-NOT-RUN >> /workspace/killed.txt', ...SHELL_ARGS }, { key, timeoutMs: 20_000 });
        assert.ok(!other.ok && other.error.code === 'KeyConflict', JSON.stringify(other));
      } finally {
        c.close();
      }
      assert.equal((await sh('cat /workspace/killed.txt')).output, 'k\n');
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('re-attaches and re-sends in-flight requests when the stream dies', async () => {
    const c = new ExecutorClient(docker, handle.containerId);
    try {
      const answer = c.request('shell', { command: 'sleep 1; echo r >> /workspace/resent.txt; echo ok', ...SHELL_ARGS }, { key: `resend-${run}`, timeoutMs: 20_000 });
      await new Promise((r) => setTimeout(r, 300));
      (c as unknown as { stream?: { destroy(): void } }).stream?.destroy();
      const r = await answer;
      assert.equal(r.ok && r.result.output, 'ok\n');
      assert.equal((await sh('cat /workspace/resent.txt')).output, 'r\n');
    } finally {
      c.close();
    }
  });

  it('cancels a running request by id', async () => {
    const c = new ExecutorClient(docker, handle.containerId);
    try {
      const id = c.newRequestId();
      const t0 = Date.now();
      const answer = c.request('shell', { command: 'sleep 100', ...SHELL_ARGS, timeoutSec: 200 }, { id, key: `cancel-${run}` });
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(await c.cancel(id), true);
      const r = await answer;
      assert.ok(r.ok);
      assert.equal(r.result.cancelled, true);
      assert.equal(r.result.exitCode, 137);
      assert.ok(Date.now() - t0 < 5000);
    } finally {
      c.close();
    }
  });

  it('answers malformed requests with an error and keeps serving', async () => {
    const c = new ExecutorClient(docker, handle.containerId);
    try {
      await c.connect();
      (c as unknown as { stream: NodeJS.WritableStream }).stream.write('this is not json\n');
      const r = await c.request('ping', {}, { timeoutMs: 5000 });
      assert.ok(r.ok && r.result.pong === true);
      const unknown = await c.request('format_disk', {}, { timeoutMs: 5000 });
      assert.ok(!unknown.ok && unknown.error.code === 'UnknownOp');
    } finally {
      c.close();
    }
  });
});

describe('in an activity context', () => {
  it('keys by workflow id + run id + activity id, heartbeats, and kills the command on cancellation', async () => {
    const env = new MockActivityEnvironment({ workflowExecution: { workflowId: `wf-${run}`, runId: 'r' }, activityId: '7' });
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const call = { id: 'model-call-1', name: 'shell', input: { command: 'echo $$ > /tmp/cancel.pid; sleep 100', timeoutSec: 300 } };
    const t0 = Date.now();
    const running = env.run(acts.runTool, { sessionId, handle, call });
    // Beats come every 2 s (none at the start: short calls never pay for one).
    setTimeout(() => env.cancel(), 4500);
    await assert.rejects(running, (e) => e instanceof CancelledFailure);
    assert.ok(Date.now() - t0 < 10000);
    assert.ok(beats.length >= 2, `heartbeats: ${beats.length}`);
    const check = await sh('kill -0 "$(cat /tmp/cancel.pid)" 2>/dev/null && echo alive || echo dead; pgrep -x sleep || echo no-sleep');
    assert.equal(check.output, 'dead\nno-sleep\n');
    // The trace of keyed calls is root's: commands cannot read it, `docker exec -u 0` can.
    assert.match((await sh('cat /run/keel/journal 2>&1 || true')).output, /Permission denied/);
    const journal = await rootExec(handle.containerId, ['grep', '-c', `"key":"wf-${run}/r/7"`, '/run/keel/journal']);
    assert.equal(journal, '2\n');
  });
});

describe('a retried tool call', () => {
  it('clears the session\'s sticky queue when its last attempt ran in another process that ran session workflows, and only then', async () => {
    const resets: unknown[] = [];
    // Records the one server call; the end-to-end effect (no sticky timeout after a SIGKILL) is measured by bench/run.ts.
    const client = {
      withAbortSignal: (_signal: AbortSignal, fn: () => unknown) => fn(),
      withDeadline: (_deadline: number, fn: () => unknown) => fn(),
      workflowService: { resetStickyTaskQueue: async (req: unknown) => (resets.push(req), {}) },
    } as unknown as Client;
    const mine = createSandboxActivities({ runtime, blobs, config: { hostId: 'test-host', defaultImage: tag, defaultRuntime: testRuntime() }, sessionWorker: 'this-process' });
    const workflowExecution = { workflowId: `wf-sticky-${run}`, runId: 'r' };
    const attempt = async (activityId: string, attempt: number, heartbeatDetails?: unknown) => {
      const env = new MockActivityEnvironment({ workflowExecution, workflowNamespace: 'keel-test', activityId, attempt, heartbeatDetails }, { client });
      const r: ToolResult = await env.run(mine.runTool, { sessionId, handle, call: { id: `sticky-${activityId}`, name: 'shell', input: { command: 'echo ok' } } });
      assert.equal(r.output, 'ok\n');
    };
    await attempt('1', 1);
    await attempt('2', 2, { requestId: 'x' }); // the last attempt ran on a sandbox-only host
    await attempt('3', 2, { requestId: 'x', sessionWorker: 'this-process' }); // a stall of this very process
    assert.deepEqual(resets, []);
    await attempt('4', 2, { requestId: 'x', sessionWorker: 'a-dead-process' });
    assert.deepEqual(resets, [{ namespace: 'keel-test', execution: workflowExecution }]);
  });

  it('beats every 0.3 s while a call runs, with who ran it, and not at all for a short call', async () => {
    const mine = createSandboxActivities({ runtime, blobs, config: { hostId: 'test-host', defaultImage: tag, defaultRuntime: testRuntime() }, sessionWorker: 'this-process' });
    const beats = async (command: string, activityId: string) => {
      const env = new MockActivityEnvironment({ workflowExecution: { workflowId: `wf-beat-${run}`, runId: 'r' }, activityId });
      const seen: unknown[] = [];
      env.on('heartbeat', (d: unknown) => seen.push(d));
      await env.run(mine.runTool, { sessionId, handle, call: { id: `beat-${activityId}`, name: 'shell', input: { command } } });
      return seen;
    };
    assert.deepEqual(await beats('true', '1'), []);
    const long = await beats('sleep 1.6', '2');
    // Counted, not timed: a loaded machine may delay a beat or two (the interval itself is bench/run.ts's business).
    assert.ok(long.length >= 2, `beats in 1.6 s: ${long.length}`);
    assert.equal((long[0] as { sessionWorker?: string }).sessionWorker, 'this-process');
  });
});

describe('teardown', () => {
  it('destroy removes the container and its volume, idempotently; tools then fail ContainerGone', async () => {
    const id = `test-destroy-${run}`;
    created.add(id);
    const h = await acts.provisionSandbox({ sessionId: id });
    const r = await acts.runTool({ sessionId: id, handle: h, call: { id: 'c', name: 'shell', input: { command: 'echo hi > f; cat f' } } });
    assert.equal(r.output, 'hi\n');
    assert.deepEqual(await acts.destroySandbox({ sessionId: id }), { removed: true });
    assert.deepEqual(await acts.destroySandbox({ sessionId: id }), { removed: false });
    await assert.rejects(docker.getContainer(h.containerId).inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
    await assert.rejects(docker.getVolume(volumeName(id)).inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
    await expectFailure(
      acts.runTool({ sessionId: id, handle: h, call: { id: 'd', name: 'shell', input: { command: 'true' } } }),
      'Sandbox.ContainerGone',
    );
  });

  it('reapOrphans removes sessions that are not live and leaves live ones', async () => {
    const orphan = `test-orphan-${run}`;
    created.add(orphan);
    const h = await acts.provisionSandbox({ sessionId: orphan });
    const reaped = await reapOrphans(docker, async (id) => id !== orphan);
    assert.deepEqual(reaped, [orphan]);
    await assert.rejects(docker.getContainer(h.containerId).inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
    await assert.rejects(docker.getVolume(volumeName(orphan)).inspect(), (e: { statusCode?: number }) => e.statusCode === 404);
    assert.equal((await docker.getContainer(handle.containerId).inspect()).State.Running, true);
  });
});
