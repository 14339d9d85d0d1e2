/**
 * What a command can reach, beyond what test/integration/sandbox.test.ts
 * ("security": uid, capabilities, read-only root, no Docker socket, only `lo`) and
 * executor-isolation.test.ts (no ptrace of PID 1) already prove: no connection
 * leaves the container, to a public address, to the Docker bridge gateway (the
 * host) or over loopback to a server the host runs; and the default seccomp
 * filter is on. A real locked-down container, driven over the executor protocol.
 *
 *   node --import tsx --test test/security/containment.test.ts
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, before, test } from 'node:test';
import { docker, startSandbox, type TestSandbox } from './helpers';
import { isGvisor } from '../../host';
import { testRuntime } from '../helpers/env';

let box: TestSandbox;
let server: Server;
let port: number;
let gateway: string;
let accepted = 0;

before(
  async () => {
    box = await startSandbox('containment');
    // A server on every host address: what a command would reach through any route out.
    server = createServer((s) => {
      accepted++;
      s.end('hello from the host\n');
    });
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    port = (server.address() as { port: number }).port;
    const bridge = await docker.getNetwork('bridge').inspect();
    gateway = bridge.IPAM?.Config?.[0]?.Gateway ?? '172.17.0.1';
  },
  { timeout: 600_000 },
);

after(async () => {
  await box?.destroy();
  await new Promise<void>((r) => server?.close(() => r()));
});

/** For each host:port, what a TCP connect from Python says: `connected` or the errno's name. */
const probe = (targets: Array<[string, number]>) =>
  `python3 -c '
import errno, socket
for host, port in ${JSON.stringify(targets)}:
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect((host, port))
        print(host, "connected")
    except OSError as e:
        print(host, errno.errorcode.get(e.errno, str(e)))
'`;

test('no connection leaves the sandbox: public address, Docker bridge gateway and loopback all refused', { timeout: 120_000 }, async () => {
  const targets: Array<[string, number]> = [
    ['1.1.1.1', 443],
    ['8.8.8.8', 53],
    [gateway, port],
    ['127.0.0.1', port],
  ];
  // The probe can see success: a listener the command itself opens on its own loopback is reached.
  const own = await box.sh(`python3 -c '
import socket
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
c = socket.socket(); c.connect(srv.getsockname()); print("connected")
'`);
  assert.equal(own.output, 'connected\n');
  const before = accepted;
  const r = await box.sh(probe(targets));
  const lines = r.output.trim().split('\n');
  assert.equal(lines.length, targets.length, r.output);
  // No route: Linux says ENETUNREACH; gVisor's network stack (runsc --network=none) says EHOSTUNREACH.
  const unreachable = isGvisor(testRuntime()) ? 'EHOSTUNREACH' : 'ENETUNREACH';
  assert.equal(lines[0], `1.1.1.1 ${unreachable}`);
  assert.equal(lines[1], `8.8.8.8 ${unreachable}`);
  assert.equal(lines[2], `${gateway} ${unreachable}`);
  assert.equal(lines[3], '127.0.0.1 ECONNREFUSED', "loopback is the container's own: nothing listens there");
  assert.equal(accepted, before, 'the host server saw no connection from the sandbox');
  // Names do not resolve either: there is no DNS server to ask.
  const dns = await box.sh(`python3 -c 'import socket; socket.getaddrinfo("example.com", 443)' 2>&1 | tail -1`);
  assert.match(dns.output, /gaierror/);
});

test('the seccomp filter is on for commands (and the executor)', { timeout: 60_000 }, async () => {
  const r = await box.sh("awk '/^Seccomp:/ {print $2}' /proc/self/status /proc/1/status");
  if (isGvisor(testRuntime())) {
    // gVisor differs (docs/security.md): runsc does not load the container's seccomp profile inside the sandbox
    // (with --oci-seccomp, Debian's runsc fails every thread creation), so commands have no filter of their own.
    // Their system calls go to gVisor's kernel, a user-space process that runs under runsc's own seccomp filter
    // on the host. Namespaces are gVisor's own there: unshare of a user namespace succeeds, and gives capabilities
    // only over what that namespace owns inside gVisor's kernel, nothing of the executor's or the host's.
    assert.equal(r.output, '0\n0\n', 'no seccomp filter inside gVisor: if this changes, drop this branch');
    assert.equal((await box.sh('uname -r')).output, '4.4.0\n', "gVisor's kernel, not the host's");
    return;
  }
  assert.equal(r.output, '2\n2\n', 'mode 2: a filter is installed');
  // A syscall Docker's default profile refuses for a process without CAP_SYS_ADMIN: unshare of a user namespace.
  const u = await box.sh(`python3 -c '
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print(libc.unshare(0x10000000), os.strerror(ctypes.get_errno()))
'`);
  assert.match(u.output, /^-1 (Operation not permitted|Invalid argument)/, u.output);
});
