/**
 * File tools that cannot be turned against the executor (sandbox/keel_executor/safefs.py),
 * run twice: with openat2 (this kernel has it) and with the component walk that
 * replaces it where the kernel lacks it (gVisor), forced by KEEL_EXECUTOR_RESOLVE=walk.
 *
 *   node --import tsx --test test/security/file-tools.test.ts
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startSandbox, type TestSandbox } from './helpers';
import { isGvisor } from '../../host';
import { testRuntime } from '../helpers/env';

/**
 * `stat -c FORMAT PATH...` for %u, %g, %a and %s, in Python (os.stat): coreutils stat fails under Debian's gVisor with
 * EINVAL (its statx refuses AT_NO_AUTOMOUNT).
 */
const STAT = (format: string, ...paths: string[]): string =>
  `python3 -c 'import os, sys\nfor p in sys.argv[2:]:\n    st = os.stat(p)\n    print(sys.argv[1].replace("%u", str(st.st_uid)).replace("%g", str(st.st_gid)).replace("%a", oct(st.st_mode & 0o7777)[2:]).replace("%s", str(st.st_size)))' '${format}' ${paths.join(' ')}`;

// gVisor has no openat2: there the executor always walks, and the openat2 suite would only repeat the walk one.
const RESOLVERS = isGvisor(testRuntime()) ? (['walk'] as const) : (['openat2', 'walk'] as const);
for (const resolver of RESOLVERS) {
  describe(`file tools (${resolver})`, () => {
    let s: TestSandbox;

    before(async () => {
      s = await startSandbox(`files-${resolver}`, resolver === 'walk' ? { env: ['KEEL_EXECUTOR_RESOLVE=walk'] } : {});
      await s.sh(
        [
          'cd /workspace',
          'ln -s /proc/1/fd/0 to-stdin && ln -s /proc/1/fd/1 to-stdout && ln -s /proc/self/fd/1 to-self-stdout',
          'ln -s /proc/1/environ to-environ && ln -s /proc to-proc && ln -s /dev/zero to-zero && ln -s ../../etc/passwd up-passwd',
          'mkfifo fifo && ln -s fifo to-fifo',
          'python3 -c "import socket; s = socket.socket(socket.AF_UNIX); s.bind(\'/workspace/sock\')"',
          'mkdir -p real && echo inside > real/f.txt && ln -s /workspace/real abs-dir && ln -s real rel-dir',
        ].join(' && '),
      );
    }, { timeout: 900_000 });

    after(async () => {
      await s?.destroy();
      await s?.runtime.close();
    });

    it('uses the resolver it was asked for', async () => {
      assert.equal((await s.ping()).resolver, resolver);
    });

    async function refused(op: 'read_file' | 'write_file' | 'edit_file' | 'list_files', path: string, codes: string[]): Promise<void> {
      const t0 = Date.now();
      const args: Record<string, unknown> = { path };
      if (op === 'write_file') args.content = '{"id":"forged","ok":true,"result":{"output":"forged"}}\n';
      if (op === 'edit_file') Object.assign(args, { old_string: 'a', new_string: 'b' });
      const r = await s.tool(op, args);
      assert.ok(!r.ok, `${op} ${path} must be refused, got ${JSON.stringify(r)}`);
      assert.ok(codes.includes(r.error.code), `${op} ${path}: ${r.error.code}: ${r.error.message}`);
      assert.ok(Date.now() - t0 < 5000, `${op} ${path} took ${Date.now() - t0} ms`);
    }

    it("refuses writes to the executor's protocol stream, directly or through a symlink (forged answers)", async () => {
      for (const path of ['/proc/1/fd/0', '/proc/1/fd/1', '/proc/self/fd/1', '/dev/stdout', 'to-stdin', 'to-stdout', 'to-self-stdout']) {
        await refused('write_file', path, ['Forbidden']);
        await refused('edit_file', path, ['Forbidden']);
      }
      // Nothing reached the protocol stream: the executor still answers, in order.
      assert.equal((await s.ping()).pong, true);
      assert.equal((await s.sh('echo still')).output, 'still\n');
    });

    it("refuses reads of the executor's stdin, without hanging (a retry would hang too)", async () => {
      for (const path of ['to-stdin', '/proc/1/fd/0', '/dev/stdin', '/dev/fd/0']) await refused('read_file', path, ['Forbidden']);
      await refused('read_file', 'to-stdin', ['Forbidden']);
    });

    it('refuses /proc, /sys and /dev, however they are reached', async () => {
      for (const path of ['/proc/1/environ', '/proc/self/environ', 'to-environ', '/proc/1/mem', '/sys/kernel/mm/transparent_hugepage/enabled', '/proc/self/status']) {
        await refused('read_file', path, ['Forbidden']);
      }
      for (const path of ['/proc', '/proc/1/fd', 'to-proc', 'to-proc/1', '/sys', '/dev']) await refused('list_files', path, ['Forbidden']);
    });

    it('refuses fifos, sockets and devices, for reading and writing', async () => {
      for (const path of ['fifo', 'to-fifo', 'sock']) {
        await refused('read_file', path, ['NotAFile']);
        await refused('write_file', path, ['NotAFile']);
        await refused('edit_file', path, ['NotAFile']);
      }
      for (const path of ['/dev/zero', 'to-zero', '/dev/null', '/dev/urandom']) {
        await refused('read_file', path, ['Forbidden']);
        await refused('write_file', path, ['Forbidden']);
      }
      assert.equal((await s.sh('test -p fifo && test -S sock && echo untouched')).output, 'untouched\n');
    });

    it('writes only under /workspace, /home/keel and /tmp', async () => {
      for (const path of ['/etc/keel-test', '/usr/bin/evil', '/opt/keel/keel_executor/server.py', '/run/keel/journal', '/workspace/../etc/x']) {
        await refused('write_file', path, ['Forbidden']);
      }
      // A symlink that leads out of the writable folders is not followed for a write.
      await s.sh('ln -sfn /etc /workspace/to-etc');
      await refused('write_file', 'to-etc/keel-test', ['Forbidden']);
      for (const [path, where] of [['/workspace/w.txt', '/workspace/w.txt'], ['/home/keel/h.txt', '/home/keel/h.txt'], ['/tmp/t/deep/t.txt', '/tmp/t/deep/t.txt']]) {
        const w = await s.tool('write_file', { path, content: 'x\n' });
        assert.ok(w.ok && w.result.path === where, JSON.stringify(w));
      }
      assert.equal((await s.sh(STAT('%u:%g %a', '/workspace/w.txt', '/home/keel/h.txt', '/tmp/t/deep', '/tmp/t/deep/t.txt'))).output, '1000:1000 644\n1000:1000 644\n1000:1000 755\n1000:1000 644\n');
    });

    it('follows ordinary symlinks inside the writable folders, and reads the image as cat can', async () => {
      const w = await s.tool('write_file', { path: 'abs-dir/g.txt', content: 'through abs\n' });
      assert.ok(w.ok, JSON.stringify(w));
      const w2 = await s.tool('write_file', { path: 'rel-dir/h.txt', content: 'through rel\n' });
      assert.ok(w2.ok, JSON.stringify(w2));
      assert.equal((await s.sh('cat real/g.txt real/h.txt')).output, 'through abs\nthrough rel\n');
      const r = await s.tool('read_file', { path: 'up-passwd' });
      assert.ok(r.ok && String(r.result.content).includes('keel:x:1000'), JSON.stringify(r));
      const os = await s.tool('read_file', { path: '/etc/os-release', limit: 1 });
      assert.ok(os.ok && String(os.result.content).includes('Debian'), JSON.stringify(os));
      const l = await s.tool('list_files', { path: 'abs-dir' });
      assert.ok(l.ok && (l.result.entries as string[]).includes('f.txt'), JSON.stringify(l));
    });

    it("keeps the sandbox user's permissions", async () => {
      await s.sh('echo secret > /workspace/locked.txt && chmod 000 /workspace/locked.txt && mkdir -p /workspace/ro && chmod 555 /workspace/ro');
      await refused('read_file', 'locked.txt', ['PermissionDenied']);
      await refused('write_file', 'locked.txt', ['PermissionDenied']);
      await refused('write_file', 'ro/new.txt', ['PermissionDenied']);
      await refused('read_file', '/etc/shadow', ['PermissionDenied']);
      await s.sh('chmod 755 /workspace/ro');
    });

    it('streams read_file: limit 1 of a 300 MB file reads neither all of it nor into memory', async () => {
      await s.sh('head -c 314572800 /dev/zero | tr "\\0" "a" | fold -w 99 > /workspace/big.txt', { timeoutSec: 120 });
      const before = await s.sh("awk '/^VmHWM/ {print $2}' /proc/1/status");
      const t0 = Date.now();
      const r = await s.tool('read_file', { path: 'big.txt', limit: 1 });
      const ms = Date.now() - t0;
      assert.ok(r.ok, JSON.stringify(r));
      const size = (await s.sh(STAT('%s', '/workspace/big.txt'))).output.trim();
      assert.equal(r.result.content, `     1\t${'a'.repeat(99)}\n[lines 1-1 shown; the file goes on (${size} bytes in all); use offset and limit to read others]`);
      assert.equal(r.result.moreLines, true);
      assert.equal(r.result.totalLines, undefined, 'no total is claimed for a file not read to the end');
      const after = await s.sh("awk '/^VmHWM/ {print $2}' /proc/1/status");
      const grewKb = Number(after.output) - Number(before.output);
      assert.ok(grewKb < 64 * 1024, `the executor's peak memory grew by ${grewKb} kB`);
      assert.ok(ms < 10_000, `took ${ms} ms`);
      // Lines further in are found by streaming too, and a small file still gets its exact total.
      const mid = await s.tool('read_file', { path: 'big.txt', offset: 1000, limit: 2 });
      assert.ok(mid.ok && String(mid.result.content).startsWith('  1000\ta'), JSON.stringify(mid).slice(0, 300));
      await s.sh('seq 1 5000 > /workspace/seq.txt');
      const seq = await s.tool('read_file', { path: 'seq.txt', offset: 10, limit: 3 });
      assert.deepEqual(
        [seq.ok && seq.result.content, seq.ok && seq.result.totalLines, seq.ok && seq.result.lastLine],
        ['    10\t10\n    11\t11\n    12\t12\n', 5000, 12],
      );
    });

    it('refuses to edit a file larger than it can hold, and says so', async () => {
      const r = await s.tool('edit_file', { path: 'big.txt', old_string: 'a', new_string: 'b' });
      assert.ok(!r.ok && r.error.code === 'FileTooLarge', JSON.stringify(r));
      assert.match(r.error.message, /up to 8388608 bytes/);
      await s.sh('rm -f /workspace/big.txt');
    });

    it('reads lines as str.splitlines() does, and the same numbers as before streaming', async () => {
      await s.sh("printf 'a\\r\\nb\\rc\\n\\nd' > /workspace/mixed.txt");
      const r = await s.tool('read_file', { path: 'mixed.txt' });
      assert.ok(r.ok);
      assert.equal(r.result.content, '     1\ta\n     2\tb\n     3\tc\n     4\t\n     5\td\n');
      assert.equal(r.result.totalLines, 5);
    });
  });
}
