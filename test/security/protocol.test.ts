/**
 * The protocol changes the host relies on (sandbox/keel_executor/server.py, shell.py):
 * shell output kept for the blob store (`storeBytes`, `outputBytes`, `full`, `cutBytes`),
 * required arguments, and idempotency keys bound to a hash of the request (`KeyConflict`),
 * held in memory within a byte budget (`KeyExpired` rather than running again).
 *
 *   node --import tsx --test test/security/protocol.test.ts
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { SHELL_ARGS, startSandbox, type ShellResult, type TestSandbox } from './helpers';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
/** A file's size in bytes, by Python's os.stat: coreutils stat fails under Debian's gVisor (its statx refuses AT_NO_AUTOMOUNT). */
const SIZE = (path: string): string => `python3 -c 'import os, sys; print(os.stat(sys.argv[1]).st_size)' ${path}`;

describe('executor protocol', () => {
  let s: TestSandbox;

  before(async () => {
    s = await startSandbox('protocol');
  }, { timeout: 900_000 });

  after(async () => {
    await s?.destroy();
    await s?.runtime.close();
  });

  it('requires timeoutSec, maxOutput and storeBytes for shell, and maxOutput for read_file', async () => {
    for (const missing of ['timeoutSec', 'maxOutput', 'storeBytes']) {
      const args: Record<string, unknown> = { command: 'touch /workspace/ran', ...SHELL_ARGS };
      delete args[missing];
      const r = await s.op('shell', args);
      assert.ok(!r.ok && r.error.code === 'InvalidArguments' && r.error.message.includes(missing), JSON.stringify(r));
    }
    const r = await s.op('read_file', { path: '/etc/hostname' });
    assert.ok(!r.ok && r.error.code === 'InvalidArguments' && r.error.message.includes('maxOutput'), JSON.stringify(r));
    assert.equal((await s.sh('test -e /workspace/ran && echo ran || echo not-run')).output, 'not-run\n');
  });

  it('keeps the whole output up to storeBytes when the model view is cut', async () => {
    const r = await s.sh('head -c 3000000 /dev/urandom | base64 -w 100 | tee /tmp/out.txt');
    const size = Number((await s.sh(SIZE('/tmp/out.txt'))).output);
    assert.equal(r.truncated, true);
    assert.equal(r.outputBytes, size);
    assert.equal(r.cutBytes, 0);
    const full = Buffer.from(r.full ?? '', 'base64');
    assert.equal(sha(full), (await s.sh('sha256sum < /tmp/out.txt')).output.slice(0, 64));
    assert.ok(r.output.length < 16_200, 'the model view is capped as before');
  });

  it('keeps the first and last storeBytes/2 bytes of a bigger output, and says how many were cut', async () => {
    const store = 1_000_000;
    const r = await s.sh('head -c 3000000 /dev/urandom | base64 -w 100 | tee /tmp/out.txt', { storeBytes: store });
    const size = Number((await s.sh(SIZE('/tmp/out.txt'))).output);
    assert.equal(r.outputBytes, size);
    assert.equal(r.cutBytes, size - store);
    const full = Buffer.from(r.full ?? '', 'base64');
    assert.equal(full.length, store);
    assert.equal(sha(full.subarray(0, store / 2)), (await s.sh(`head -c ${store / 2} /tmp/out.txt | sha256sum`)).output.slice(0, 64));
    assert.equal(sha(full.subarray(store / 2)), (await s.sh(`tail -c ${store / 2} /tmp/out.txt | sha256sum`)).output.slice(0, 64));
  });

  it('sends no full copy when the model view is whole', async () => {
    const r = await s.sh('echo small');
    assert.equal(r.outputBytes, 6);
    assert.equal(r.full, undefined);
    assert.equal(r.cutBytes, undefined);
  });

  it('replays a repeated key with the same request and refuses one with another request, running nothing', async () => {
    const key = `k-${s.sessionId}`;
    const req = { command: 'echo x >> /workspace/once.txt; wc -l < /workspace/once.txt', ...SHELL_ARGS };
    const first = await s.op('shell', req, { key });
    const again = await s.op('shell', req, { key });
    assert.ok(first.ok && again.ok && again.replayed === true);
    assert.deepEqual(again.result, first.result);
    for (const other of [
      { ...req, command: 'echo y >> /workspace/once.txt' },
      { ...req, maxOutput: 100 },
      { ...req, storeBytes: 1 },
    ]) {
      const r = await s.op('shell', other, { key });
      assert.ok(!r.ok && r.error.code === 'KeyConflict', JSON.stringify(r));
    }
    const asRead = await s.op('read_file', { path: 'once.txt', maxOutput: 100 }, { key });
    assert.ok(!asRead.ok && asRead.error.code === 'KeyConflict');
    assert.equal((await s.sh('cat /workspace/once.txt')).output, 'x\n');
  });

  it('refuses a conflicting key while the first request still runs, and the first finishes as it was', async () => {
    const key = `running-${s.sessionId}`;
    const running = s.op('shell', { command: 'sleep 1; echo first', ...SHELL_ARGS }, { key });
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    const conflict = await s.op('shell', { command: 'echo second', ...SHELL_ARGS }, { key });
    assert.ok(!conflict.ok && conflict.error.code === 'KeyConflict');
    assert.ok(Date.now() - t0 < 800, 'refused at once, not after waiting');
    const first = await running;
    assert.ok(first.ok && (first.result as unknown as ShellResult).output === 'first\n');
  });

  it('holds answers within a byte budget; a dropped key is refused (KeyExpired), never run again', { timeout: 120_000 }, async () => {
    // Six answers of ~14 MB (10 MiB of output, base64) pass the 64 MiB budget: the oldest goes.
    const keys: string[] = [];
    for (let i = 0; i < 6; i++) {
      const key = `big-${i}-${s.sessionId}`;
      keys.push(key);
      const r = await s.op('shell', { command: `echo run >> /workspace/big-${i}.txt; head -c 12000000 /dev/zero | tr '\\0' 'z'`, ...SHELL_ARGS }, { key, timeoutMs: 60_000 });
      assert.ok(r.ok && (r.result as unknown as ShellResult).full !== undefined);
    }
    const req = { command: `echo run >> /workspace/big-0.txt; head -c 12000000 /dev/zero | tr '\\0' 'z'`, ...SHELL_ARGS };
    const expired = await s.op('shell', req, { key: keys[0] });
    assert.ok(!expired.ok && expired.error.code === 'KeyExpired', JSON.stringify(expired).slice(0, 300));
    assert.equal((await s.sh('cat /workspace/big-0.txt')).output, 'run\n', 'not run again');
    const latest = await s.op('shell', { ...req, command: req.command.replace('big-0', 'big-5') }, { key: keys[5] });
    assert.ok(latest.ok && latest.replayed === true, 'the newest answer is still held');
  });
});
