import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { describe, it } from 'node:test';
import { defaultImageTag } from '../../host';
import { resolveSandboxConfig } from '../../activities/sandbox';
import { containerName, createOptions, EXECUTOR_COMMAND, poolOptions, safeName, volumeName } from '../../host';
import { toExecutorOp, toToolResult } from '../../activities/sandbox/tool-ops';
import { sandboxSpecProblems } from '../../common/sandbox-spec';
import { loadConfig } from '../../workers/config';
import { DEFAULT_SHELL_TIMEOUT_SEC, FILE_TOOL_TIMEOUT_SEC, OUTPUT_STORE_CAP, SANDBOX_DEFAULTS } from '../../common/defaults';

describe('resolveSandboxConfig', () => {
  it('fills every default', () => {
    assert.deepEqual(resolveSandboxConfig(), {
      hostId: hostname(),
      hostQueue: `keel-sandbox-${hostname()}`,
      defaultImage: defaultImageTag(),
      defaultRuntime: 'runc',
      diskDir: '/var/lib/keel/disks',
      outputLimit: 16000,
      egress: { headers: {}, resolve: {} },
    });
  });

  it('keeps explicit values and derives the queue from the host id', () => {
    const c = resolveSandboxConfig({ hostId: 'h1', outputLimit: 500, defaultImage: 'img:1' });
    assert.equal(c.hostQueue, 'keel-sandbox-h1');
    assert.equal(c.outputLimit, 500);
    assert.equal(c.defaultImage, 'img:1');
    assert.equal(resolveSandboxConfig({ hostId: 'h1', hostQueue: 'q' }).hostQueue, 'q');
  });
});

describe('container naming and options', () => {
  it('keeps valid ids and makes invalid ones safe and distinct', () => {
    assert.equal(safeName('abc-123_x.y'), 'abc-123_x.y');
    assert.match(safeName('a/b c'), /^a-b-c-[0-9a-f]{8}$/);
    assert.notEqual(safeName('a/b'), safeName('a:b'));
    assert.match(safeName('///'), /^[0-9a-f]{8}$/);
    assert.equal(containerName('s1'), 'keel-s1');
    assert.equal(volumeName('s1'), 'keel-ws-s1');
  });

  it('applies spec defaults and the lockdown', () => {
    const o = createOptions({ sessionId: 's1', hostId: 'h', image: 'img' });
    assert.equal(o.HostConfig?.Memory, 1024 * 1024 * 1024);
    assert.equal(o.HostConfig?.NanoCpus, 1e9);
    assert.equal(o.HostConfig?.PidsLimit, 256);
    assert.equal(o.HostConfig?.NetworkMode, 'none');
    assert.equal(o.StdinOnce, false);
    assert.equal(o.OpenStdin, true);
    assert.equal(o.HostConfig?.Binds, undefined);
    const custom = createOptions({ sessionId: 's1', hostId: 'h', image: 'img', spec: { memoryMb: 256, cpus: 0.5, pidsLimit: 64 } });
    assert.equal(custom.HostConfig?.Memory, 256 * 1024 * 1024);
    assert.equal(custom.HostConfig?.NanoCpus, 5e8);
    assert.equal(custom.HostConfig?.PidsLimit, 64);
  });

  it("runs under the spec's runtime, else the worker's, else runc", () => {
    assert.equal(createOptions({ sessionId: 's1', hostId: 'h', image: 'img' }).HostConfig?.Runtime, 'runc');
    assert.equal(createOptions({ sessionId: 's1', hostId: 'h', image: 'img', runtime: 'runsc' }).HostConfig?.Runtime, 'runsc');
    assert.equal(createOptions({ sessionId: 's1', hostId: 'h', image: 'img', runtime: 'runsc', spec: { runtime: 'runc' } }).HostConfig?.Runtime, 'runc');
    // gVisor's own threads and ptrace stubs share the container's host pids cgroup.
    assert.equal(createOptions({ sessionId: 's1', hostId: 'h', image: 'img', runtime: 'runsc', spec: { pidsLimit: 64 } }).HostConfig?.PidsLimit, 64 * 32 + 512);
    assert.equal(createOptions({ sessionId: 's1', hostId: 'h', image: 'img', spec: { pidsLimit: 64 } }).HostConfig?.PidsLimit, 64);
  });

  it('under gVisor the executor holds the commands to the pids limit (RLIMIT_NPROC); under runc the cgroup does', () => {
    assert.deepEqual(createOptions({ sessionId: 's1', hostId: 'h', image: 'img', runtime: 'runsc', spec: { pidsLimit: 64 } }).Cmd, [...EXECUTOR_COMMAND, '--nproc', '64']);
    assert.deepEqual(createOptions({ sessionId: 's1', hostId: 'h', image: 'img', spec: { pidsLimit: 64 } }).Cmd, [...EXECUTOR_COMMAND]);
    const pool = poolOptions({ token: 't', hostId: 'h', image: 'img', runtime: 'runsc', leaseSec: 30 });
    assert.deepEqual(pool.Cmd, [...EXECUTOR_COMMAND, '--pool-lease', '30', '--nproc', String(SANDBOX_DEFAULTS.pidsLimit)]);
  });

  it('a networked gVisor session runs under runsc-net; without network it stays on runsc (--network=none)', () => {
    const networked = createOptions({ sessionId: 's1', hostId: 'h', image: 'img', runtime: 'runsc', egress: { network: 'keel-net-s1' } });
    assert.equal(networked.HostConfig?.Runtime, 'runsc-net');
    assert.equal(networked.HostConfig?.NetworkMode, 'keel-net-s1');
    assert.deepEqual(networked.Cmd?.slice(-2), ['--nproc', String(SANDBOX_DEFAULTS.pidsLimit)]);
    assert.equal(createOptions({ sessionId: 's1', hostId: 'h', image: 'img', runtime: 'runsc' }).HostConfig?.Runtime, 'runsc');
    assert.equal(createOptions({ sessionId: 's1', hostId: 'h', image: 'img', egress: { network: 'keel-net-s1' } }).HostConfig?.Runtime, 'runc');
  });

  it('refuses runtime names that are not names, and disk sizes out of bounds', () => {
    assert.deepEqual(sandboxSpecProblems({ runtime: 'runsc', diskMb: 64 }), []);
    assert.match(sandboxSpecProblems({ runtime: '--privileged' })[0] ?? '', /sandbox\.runtime must be a Docker runtime name/);
    assert.match(sandboxSpecProblems({ runtime: '' })[0] ?? '', /sandbox\.runtime/);
    assert.match(sandboxSpecProblems({ diskMb: 0 })[0] ?? '', /sandbox\.diskMb must be a number from 64/);
  });

  it('reads KEEL_DISK_DIR and KEEL_DISK_QUOTA: quota on in /var/lib/keel/disks by default, off on request', () => {
    assert.equal(loadConfig({}).diskDir, '/var/lib/keel/disks');
    assert.equal(loadConfig({ KEEL_DISK_DIR: '/srv/disks' }).diskDir, '/srv/disks');
    assert.equal(loadConfig({ KEEL_DISK_QUOTA: 'off' }).diskDir, null);
    assert.throws(() => loadConfig({ KEEL_DISK_QUOTA: 'no' }), /KEEL_DISK_QUOTA must be on or off/);
    assert.throws(() => loadConfig({ KEEL_DISK_DIR: 'disks' }), /KEEL_DISK_DIR must be an absolute path/);
  });

  it('reads KEEL_SANDBOX_RUNTIME, runc by default, and refuses a bad name', () => {
    assert.equal(loadConfig({}).sandboxRuntime, 'runc');
    assert.equal(loadConfig({ KEEL_SANDBOX_RUNTIME: 'runsc' }).sandboxRuntime, 'runsc');
    assert.throws(() => loadConfig({ KEEL_SANDBOX_RUNTIME: 'a b' }), /KEEL_SANDBOX_RUNTIME: sandbox\.runtime must be/);
  });
});

describe('tool result mapping', () => {
  const limits = { outputLimit: 100 };
  const call = { id: 'c1', name: 'shell', input: { command: 'x' } };

  it('passes the default timeout and output cap to the executor', () => {
    const op = toExecutorOp('shell', { command: 'x' }, limits);
    assert.deepEqual(op.args, { command: 'x', maxOutput: 100, timeoutSec: DEFAULT_SHELL_TIMEOUT_SEC, storeBytes: OUTPUT_STORE_CAP });
    assert.equal(op.timeoutMs, DEFAULT_SHELL_TIMEOUT_SEC * 1000 + 30_000);
    assert.equal(toExecutorOp('shell', { command: 'x', timeoutSec: 7 }, limits).timeoutMs, 37_000);
    assert.equal(toExecutorOp('read_file', { path: 'a' }, limits).timeoutMs, FILE_TOOL_TIMEOUT_SEC * 1000);
  });

  it('turns a non-zero exit into ok:false with the exit code', () => {
    const r = toToolResult(call, 'shell', { id: '1', ok: true, result: { exitCode: 2, output: 'bad\n', durationMs: 5 } }, 100, 9);
    assert.deepEqual(r, { callId: 'c1', name: 'shell', ok: false, output: 'bad\n[exit code 2]', exitCode: 2, durationMs: 5, error: 'NonZeroExit' });
  });

  it('turns executor errors into tool errors', () => {
    const r = toToolResult(call, 'read_file', { id: '1', ok: false, error: { code: 'NotFound', message: '/x does not exist' } }, 100, 3);
    assert.equal(r.ok, false);
    assert.equal(r.error, 'NotFound');
    assert.equal(r.output, '/x does not exist');
  });
});
