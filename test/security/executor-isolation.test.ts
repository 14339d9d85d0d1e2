/**
 * The executor out of the commands' reach (sandbox/keel_executor/privileges.py, host/lockdown.ts):
 * a command cannot signal, ptrace, read the memory, environment or fds of the executor,
 * nor read or write its state.
 *
 *   node --import tsx --test test/security/executor-isolation.test.ts
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { docker, rootExec, startSandbox, type TestSandbox } from './helpers';
import { isGvisor } from '../../host';
import { testRuntime } from '../helpers/env';

/** A Python snippet run by the command: every signal 1..31 to every executor thread, by kill, tgkill and kill(-1). */
const SIGNAL_ALL = String.raw`
import ctypes, os, platform
libc = ctypes.CDLL(None, use_errno=True)
TGKILL = {"x86_64": 234, "aarch64": 131}[platform.machine()]
tids = [int(t) for t in os.listdir("/proc/1/task")]
delivered = []
for sig in range(1, 32):
    for tid in tids:
        try:
            os.kill(tid, sig)
            delivered.append("kill %d %d" % (sig, tid))
        except PermissionError:
            pass
        if libc.syscall(TGKILL, 1, tid, sig) == 0:
            delivered.append("tgkill %d %d" % (sig, tid))
    try:
        os.kill(-1, sig)  # every process we may signal but ourselves: none (the command is exec'd python)
    except (PermissionError, ProcessLookupError):
        pass
print("threads", len(tids))
print("delivered", delivered)
`;

/** Every way to reach into the executor from a command, and what it got. */
const REACH = String.raw`
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
out = []
pids = ["1"] + ["1/task/" + t for t in os.listdir("/proc/1/task")]
for p in pids:
    for f in ("mem", "environ", "fd/0", "fd/1", "auxv", "syscall", "stack", "maps"):
        try:
            with open("/proc/%s/%s" % (p, f), "rb") as fh:
                fh.read(1)
            out.append("read /proc/%s/%s" % (p, f))
        except OSError:
            pass
    for f in ("fd", "fdinfo", "map_files"):
        try:
            os.listdir("/proc/%s/%s" % (p, f))
            out.append("listed /proc/%s/%s" % (p, f))
        except OSError:
            pass
    for f in ("cwd", "root", "exe"):
        try:
            os.readlink("/proc/%s/%s" % (p, f))
            out.append("readlink /proc/%s/%s" % (p, f))
        except OSError:
            pass
for tid in [1] + [int(t) for t in os.listdir("/proc/1/task")]:
    for req in (16, 0x4206):  # PTRACE_ATTACH, PTRACE_SEIZE
        if libc.ptrace(req, tid, 0, 0) == 0:
            out.append("ptrace %d %d" % (req, tid))
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
buf = ctypes.create_string_buffer(16)
local, remote = iovec(ctypes.addressof(buf), 16), iovec(0x400000, 16)
if libc.process_vm_readv(1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) >= 0:
    out.append("process_vm_readv")
print("reached", out)
`;

describe('executor isolation', () => {
  let s: TestSandbox;
  let started: string;

  before(async () => {
    s = await startSandbox('isolation');
    started = (await docker.getContainer(s.containerId).inspect()).State.StartedAt;
  }, { timeout: 900_000 });

  after(async () => {
    await s?.destroy();
    await s?.runtime.close();
  });

  it('survives every signal 1..31 sent to every executor thread by kill, tgkill and kill(-1)', { timeout: 60_000 }, async () => {
    const stat = (await s.sh('cut -d" " -f22 /proc/1/stat')).output;
    const r = await s.sh(`exec python3 - <<'EOF'\n${SIGNAL_ALL}\nEOF`);
    assert.equal(r.exitCode, 0, r.output);
    assert.match(r.output, /^threads \d+\ndelivered \[\]\n$/);
    assert.ok(Number(/threads (\d+)/.exec(r.output)?.[1]) > 5, 'the executor threads were all tried');
    // The same executor, still PID 1, still answering, not stopped.
    assert.equal((await s.sh('cut -d" " -f22 /proc/1/stat')).output, stat);
    assert.equal((await s.sh('cut -d" " -f3 /proc/1/stat')).output.trim() !== 'T', true);
    assert.equal((await s.ping()).pid, 1);
    const info = await docker.getContainer(s.containerId).inspect();
    assert.equal(info.State.Running, true);
    assert.equal(info.State.StartedAt, started);
    assert.equal(info.RestartCount, 0);
  });

  it('survives kill -INT 1, kill -9 1 and kill -TERM -1 from bash', async () => {
    const r = await s.sh('kill -INT 1; kill -9 1; kill -TERM -1; kill -STOP 1; echo done');
    assert.match(r.output, /Operation not permitted/);
    assert.match(r.output, /done\n$/);
    assert.equal((await s.sh('echo alive')).output, 'alive\n');
  });

  it('cannot ptrace, read the memory, environment or fds of, or readlink into any executor thread', async () => {
    const r = await s.sh(`python3 - <<'EOF'\n${REACH}\nEOF`);
    if (!isGvisor(testRuntime())) {
      assert.equal(r.output, 'reached []\n');
      return;
    }
    // gVisor differs (docs/security.md): its /proc makes environ, auxv and maps of every task 0444 and lists fd and
    // fdinfo, whoever owns the task. What is reached is only those: the executor's environment (the container's,
    // which holds no secret: secrets.test.ts), its memory layout and fd numbers. Its memory, its fds' contents and
    // targets, ptrace and process_vm_readv stay refused, so nothing a command does changes a result.
    const reached = JSON.parse(r.output.replace(/^reached /, '').replace(/'/g, '"')) as string[];
    const gvisorOnly = /^(read \/proc\/1(\/task\/\d+)?\/(environ|auxv|maps)|listed \/proc\/1(\/task\/\d+)?\/(fd|fdinfo))$/;
    assert.deepEqual(reached.filter((x) => !gvisorOnly.test(x)), [], r.output);
  });

  it("cannot read, write or fill the executor's state; an operator can read it", async () => {
    await s.op('shell', { command: 'true', timeoutSec: 5, maxOutput: 100, storeBytes: 0 }, { key: `trace-${s.sessionId}` });
    // The listing and the owner come from Python (os.listdir, os.stat), not coreutils ls and stat, which fail under
    // Debian's gVisor with EINVAL (its statx refuses AT_NO_AUTOMOUNT).
    const r = await s.sh(
      `python3 -c 'import os; os.listdir("/run/keel")' 2>&1 | tail -1; cat /run/keel/journal 2>&1; touch /run/keel/x 2>&1; echo x > /run/keel/journal 2>&1; python3 -c 'import os, pwd; st = os.stat("/run/keel"); print(pwd.getpwuid(st.st_uid).pw_name, oct(st.st_mode & 0o777)[2:])'; true`,
    );
    assert.equal((r.output.match(/Permission denied/g) ?? []).length, 4, r.output);
    assert.match(r.output, /root 700\n$/);
    const journal = await rootExec(s.containerId, ['cat', '/run/keel/journal']);
    assert.match(journal, new RegExp(`"key":"trace-${s.sessionId}","phase":"done"`));
  });

  it('runs commands with no capabilities and an empty bounding set; nothing they exec can gain one', async () => {
    const r = await s.sh("grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status | awk '{print $2}' | sort -u; setpriv --reuid=0 true 2>&1 | head -1");
    assert.match(r.output, /^0000000000000000\nsetpriv: .*(not permitted|failed)/);
  });
});
