/**
 * The egress allowlist on real Docker: local servers stand in for the internet
 * (an HTTP one reached as `internet.keel.test`, an HTTPS one with a throwaway CA
 * as `api.keel.test`, for which the worker holds a credential; the worker pins
 * both names to the Docker host's address, the one test-only exception to
 * "public addresses only"). Whole sessions run on a real Temporal server, so what
 * the proxy refused is checked where it is recorded: the session's events.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import type { Sql } from 'postgres';
import { createSandboxActivities } from '../../activities/sandbox';
import { DirBlobStore, readBlob } from '../../blobs';
import { KeelClient } from '../../client';
import { eventsOfType } from '../../common/events';
import type { ScriptTurn, SessionSpec } from '../../common/types';
import { defaultImageTag, egressNames, EGRESS_NETWORK, ensureEgressNetwork, GVISOR_NET_RUNTIME, isGvisor, reapOrphans, SandboxRuntime, WarmPool } from '../../host';
import { getEvents } from '../../store';
import { connectDatabase } from '../../workers/services';
import { createWorkers, type KeelWorkers } from '../../workers/worker';
import { ensureSandboxImage, testConfig, testRuntime, uniqueId, workflowBundle } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { recordHistory } from '../helpers/history';
import { TestTemporal } from '../helpers/temporal';

/** The credential the worker holds for the stand-in internet: it must be found nowhere but in the server's request. */
const SECRET = `keel-planted-egress-credential-${Math.random().toString(36).slice(2)}`;
const INTERNET = 'internet.keel.test';
const API = 'api.keel.test';

const docker = new Docker();
const blobDir = mkdtempSync(join(tmpdir(), 'keel-egress-blobs-'));
let server: Server;
let port: number;
let tlsServer: Server;
let tlsPort: number;
/** The Docker host's address on the egress network: private, so reachable only through the pinned name. */
let hostAddress: string;
let caFile = '';
const requests: Array<{ url: string; tls: boolean; headers: IncomingHttpHeaders }> = [];
const logs: string[] = [];
let temporal: TestTemporal;
let workers: KeelWorkers;
let running: Promise<void>;
let client: KeelClient;
let sql: Sql;

const hostId = uniqueId('egress-host');

before(async () => {
  await ensureSandboxImage(docker);
  const serve = (tls: boolean) => (req: IncomingMessage, res: ServerResponse) => {
    requests.push({ url: req.url ?? '', tls, headers: req.headers });
    res.end(`hello from the stand-in internet${tls ? ' over TLS' : ''}; key header ${req.headers['x-api-key'] ? 'present' : 'absent'}\n`);
  };
  server = createServer(serve(false));
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
  port = (server.address() as { port: number }).port;
  // A throwaway self-signed certificate for api.keel.test, trusted by the proxy through KEEL_EGRESS_CA_FILE.
  const keyFile = join(blobDir, '..', `${blobDir.split('/').pop()}-key.pem`);
  const certFile = join(blobDir, '..', `${blobDir.split('/').pop()}-cert.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', `/CN=${API}`, '-addext', `subjectAltName=DNS:${API}`], { stdio: 'ignore' });
  caFile = certFile;
  tlsServer = createTlsServer({ key: readFileSync(keyFile), cert: readFileSync(certFile) }, serve(true));
  await new Promise<void>((resolve) => tlsServer.listen(0, '0.0.0.0', resolve));
  tlsPort = (tlsServer.address() as { port: number }).port;
  const gateway = await ensureEgressNetwork(docker);
  assert.ok(gateway, 'the egress network has a gateway');
  hostAddress = gateway;

  // Everything the worker process logs, to search for the credential.
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
    stream.write = ((chunk: unknown, ...rest: unknown[]) => {
      logs.push(String(chunk));
      return write(chunk, ...rest);
    }) as typeof stream.write;
  }

  temporal = await TestTemporal.start();
  const config = testConfig(temporal.address, {
    KEEL_HOST_ID: hostId,
    KEEL_BLOB_DIR: blobDir,
    KEEL_EGRESS_RESOLVE: `${INTERNET}=${hostAddress},${API}=${hostAddress}`,
    KEEL_EGRESS_HEADERS: JSON.stringify({ [API]: { 'X-Api-Key': SECRET } }),
    KEEL_EGRESS_CA_FILE: caFile,
  });
  workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  running = workers.run();
  client = await KeelClient.connect({ address: config.temporalAddress });
  sql = await connectDatabase(config);
});

after(async () => {
  await workers?.shutdown();
  await running;
  await client?.close();
  await sql?.end({ timeout: 2 });
  await temporal?.down();
  server?.close();
  tlsServer?.close();
  rmSync(blobDir, { recursive: true, force: true });
  for (const f of [caFile, caFile.replace(/-cert\.pem$/, '-key.pem')]) rmSync(f, { force: true });
});

/** Python run in the sandbox: each request's outcome on one line. */
function probe(): string {
  return `cat > /tmp/probe.py <<'EOF'
import socket, urllib.request, urllib.error
def get(url, headers={}):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=15) as r:
            return f"{r.status} {r.read().decode().strip()}"
    except urllib.error.HTTPError as e:
        return f"{e.code} {e.read().decode().strip()}"
    except Exception as e:
        return f"error {type(e).__name__}: {e}"
print("allowed:", get("http://${INTERNET}:${port}/hello"))
print("api:", get("http://${API}:${tlsPort}/hello", {"X-Api-Key": "forged-by-the-sandbox"}))
print("other:", get("http://other.keel.test:${port}/"))
print("ip:", get("http://${hostAddress}:${port}/"))
print("private:", get("http://localhost:${port}/"))
print("tunnel:", get("https://elsewhere.keel.test/"))
s = socket.socket(); s.settimeout(3)
try:
    s.connect(("${hostAddress}", ${port})); print("direct: connected")
except OSError as e:
    print("direct: failed", e)
try:
    socket.getaddrinfo("${INTERNET}", ${port}); print("dns: resolved")
except OSError:
    print("dns: no answer")
EOF
python3 /tmp/probe.py; echo '--- env'; env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | sort -u`;
}

const scripted = (script: ScriptTurn[], allow: NonNullable<SessionSpec['sandbox']>['network']): SessionSpec => ({
  task: 'egress test',
  model: { provider: 'scripted', model: 'test', script },
  sandbox: { network: allow },
});

describe('a networked session', () => {
  test('reaches an allowed name through the proxy, with a credential it never sees; other names, addresses and private ranges are refused and recorded', async () => {
    const id = uniqueId('egress');
    await client.start(
      scripted(
        [
          { toolCalls: [{ name: 'shell', input: { command: probe() } }] },
          // A background job refused after this call's report: collected when the sandbox is released.
          { toolCalls: [{ name: 'shell', input: { command: `nohup python3 -c "import time, urllib.request as u; time.sleep(1); u.urlopen('http://late.keel.test/')" >/dev/null 2>&1 & echo started` } }] },
          { toolCalls: [{ name: 'sleep', input: { seconds: 4 } }] },
          { text: 'done' },
        ],
        { allow: [{ host: INTERNET, ports: [port] }, { host: API, ports: [tlsPort] }, { host: 'localhost', ports: [port] }] },
      ),
      { sessionId: id },
    );

    // While it runs: neither container holds the credential, in its config or its logs.
    await waitForEvent(sql, id, (e) => e.type === 'tool.result');
    const names = egressNames(id);
    const proxy = await docker.getContainer(names.proxy).inspect();
    const sandbox = await docker.getContainer(`keel-${id}`).inspect();
    assert.ok(!JSON.stringify(proxy).includes(SECRET), 'the proxy container config holds no credential');
    assert.ok(!JSON.stringify(sandbox).includes(SECRET), 'the sandbox container config holds no credential');
    assert.deepEqual(Object.keys(sandbox.NetworkSettings.Networks), [names.network], 'the sandbox is on its own network only');
    assert.equal(sandbox.HostConfig.Runtime, isGvisor(testRuntime()) ? GVISOR_NET_RUNTIME : testRuntime(), 'under gVisor: runsc-net');
    assert.deepEqual(Object.keys(proxy.NetworkSettings.Networks).sort(), [EGRESS_NETWORK, names.network].sort());
    const proxyLogs = (await docker.getContainer(names.proxy).logs({ stdout: true, stderr: true })).toString('latin1');
    assert.ok(proxyLogs.includes('"refused"'), 'the proxy log is read');
    assert.ok(!proxyLogs.includes(SECRET), 'the proxy logs no credential');

    const result = await client.result(id);
    assert.equal(result.status, 'completed', result.error);
    const events = await getEvents(sql, id);
    const first = eventsOfType(events, 'tool.result')[0]!.data;
    // The whole output (the environment dumps make it long): from the blob store when the event holds a preview.
    const output = first.outputRef ? (await readBlob(new DirBlobStore(blobDir), first.outputRef.sha)).toString('utf8') : first.output;
    assert.match(output, /allowed: 200 hello from the stand-in internet; key header absent/);
    assert.match(output, /api: 200 hello from the stand-in internet over TLS; key header present/);
    assert.match(output, new RegExp(`other: 403 keel egress proxy refused other\\.keel\\.test:${port}: not-allowed`));
    assert.match(output, new RegExp(`ip: 403 keel egress proxy refused ${hostAddress.replace(/\./g, '\\.')}:${port}: address-literal`));
    assert.match(output, new RegExp(`private: 403 keel egress proxy refused localhost:${port}: private-address`));
    assert.match(output, /tunnel: error URLError: .*403/);
    assert.match(output, /direct: failed/, 'no route past the proxy');
    assert.match(output, /dns: no answer/, 'the sandbox resolves no name but the proxy');
    assert.match(output, /HTTP_PROXY=http:\/\/egress-proxy:3128/);

    // The API got the credential, added by the proxy in place of the one the sandbox sent, over TLS;
    // the host without one got none.
    const api = requests.find((r) => r.url === '/hello' && r.tls);
    assert.equal(api?.headers['x-api-key'], SECRET);
    assert.equal(api?.headers.host, `${API}:${tlsPort}`);
    const plain = requests.find((r) => r.url === '/hello' && !r.tls);
    assert.equal(plain?.headers['x-api-key'], undefined);
    assert.equal(plain?.headers.host, `${INTERNET}:${port}`);
    assert.equal(plain?.headers['proxy-connection'], undefined);

    const refused = eventsOfType(events, 'network.refused').map((e) => e.data);
    const byHost = (host: string) => refused.find((r) => r.host === host);
    assert.deepEqual(
      refused.map((r) => `${r.host}:${r.port} ${r.reason} ${r.callId ? `after step ${r.step}` : 'at release'}`).sort(),
      [
        `other.keel.test:${port} not-allowed after step 1`,
        `${hostAddress}:${port} address-literal after step 1`,
        `localhost:${port} private-address after step 1`,
        'elsewhere.keel.test:443 not-allowed after step 1',
        'late.keel.test:80 not-allowed at release',
      ].sort(),
    );
    assert.equal(byHost('localhost')?.address, '127.0.0.1');
    const firstCall = eventsOfType(events, 'tool.call')[0]!.data.callId;
    for (const r of refused) {
      assert.equal(r.callId ?? firstCall, firstCall);
      assert.equal(r.count, 1);
      assert.ok(!Number.isNaN(Date.parse(r.at)));
    }
    const released = events.find((e) => e.type === 'network.refused' && e.data.host === 'late.keel.test')!;
    assert.ok(released.seq < events.find((e) => e.type === 'sandbox.removed')!.seq, 'recorded as the sandbox goes');
    assert.equal((first as { network?: unknown }).network, undefined, 'refusals are events, not part of the result');
    const contract = eventsOfType(events, 'session.contract')[0]?.data;
    assert.equal(contract?.sandbox?.network, `egress proxy: ${INTERNET}:${port} ${API}:${tlsPort} localhost:${port}`);

    // Gone with the sandbox.
    await assert.rejects(docker.getContainer(names.proxy).inspect(), /404|no such container/i);
    await assert.rejects(docker.getNetwork(names.network).inspect(), /404|not found/i);

    // The credential is nowhere Keel keeps anything.
    const history = historyText(await client.temporal.workflow.getHandle(id).fetchHistory());
    assert.ok(history.includes('address-literal'), 'the history is read (the tool call result holds the refusals)');
    assert.ok(!history.includes(SECRET), 'not in the workflow history');
    assert.ok(!JSON.stringify(events).includes(SECRET), 'not in the events');
    assert.ok(!output.includes(SECRET), 'not in the sandbox (its env and every process environment)');
    assert.ok(filesUnder(blobDir).length > 0, 'the blob store is read');
    for (const file of filesUnder(blobDir)) assert.ok(!readFileSync(file).includes(SECRET), `not in blob ${file}`);
    assert.ok(!logs.join('').includes(SECRET), 'not in anything this process (the worker) printed');
    await recordHistory(client.temporal, id, 'egress-session.json');
  });

  test('released while it waits and resumed, it gets its network back: refusals before the release are recorded, requests after it work', async () => {
    const id = uniqueId('egress-suspend');
    const get = (host: string, p: number) => `python3 -c "import urllib.request as u; print(u.urlopen('http://${host}:${p}/again').read().decode())"`;
    await client.start(
      {
        ...scripted(
          [
            { toolCalls: [{ name: 'shell', input: { command: `nohup python3 -c "import urllib.request as u; u.urlopen('http://before-release.keel.test/')" >/dev/null 2>&1 & sleep 1` } }] },
            { toolCalls: [{ name: 'sleep', input: { seconds: 3 } }] },
            { toolCalls: [{ name: 'shell', input: { command: get(INTERNET, port) } }] },
            { text: 'done' },
          ],
          { allow: [{ host: INTERNET, ports: [port] }] },
        ),
        sandbox: { network: { allow: [{ host: INTERNET, ports: [port] }] }, idleSuspendSec: 1 },
      },
      { sessionId: id },
    );
    const result = await client.result(id);
    assert.equal(result.status, 'completed', result.error);
    const events = await getEvents(sql, id);
    const types = events.map((e) => e.type);
    assert.ok(types.includes('sandbox.suspended') && types.includes('sandbox.resumed'), types.join(' '));
    const results = eventsOfType(events, 'tool.result');
    assert.match(String(results.at(-1)?.data.output), /hello from the stand-in internet/, 'the network is back after the resume');
    const refused = eventsOfType(events, 'network.refused').map((e) => e.data);
    assert.equal(refused.length, 1, JSON.stringify(refused));
    assert.equal(refused[0]?.host, 'before-release.keel.test');
    await assert.rejects(docker.getNetwork(egressNames(id).network).inspect(), /404|not found/i);
  });
});

/** Every string and byte payload of a history, decoded, in one text (payload data is bytes, not JSON text). */
function historyText(value: unknown): string {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) return value.map(historyText).join('\n');
  if (value && typeof value === 'object') return Object.values(value).map(historyText).join('\n');
  return '';
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

describe('networks between sessions', () => {
  const tag = defaultImageTag();
  const runtime = new SandboxRuntime(docker);
  const acts = createSandboxActivities({ runtime, blobs: new DirBlobStore(blobDir), config: { hostId, defaultImage: tag, defaultRuntime: testRuntime() } });
  const shell = async (containerId: string, command: string): Promise<string> => {
    const r = await runtime.client(containerId).request('shell', { command, timeoutSec: 30, maxOutput: 16_000, storeBytes: 1 << 20 }, { timeoutMs: 60_000 });
    assert.ok(r.ok, JSON.stringify(r));
    return String(r.result.output);
  };
  const connect = (host: string, p: number) =>
    `python3 -c "
import socket
s = socket.socket(); s.settimeout(3)
try:
    s.connect(('${host}', ${p})); print('connected')
except OSError as e:
    print('failed', e)"`;
  const sessions: string[] = [];
  after(async () => {
    for (const id of sessions) await acts.destroySandbox({ sessionId: id }).catch(() => undefined);
    await runtime.close();
  });

  test('two networked sessions cannot reach each other, and a session without network has none', async () => {
    const network = { allow: [{ host: INTERNET, ports: [port] }] };
    const [a, b, c] = [uniqueId('egress-a'), uniqueId('egress-b'), uniqueId('egress-c')];
    sessions.push(a, b, c);
    const ha = await acts.provisionSandbox({ sessionId: a, spec: { network } });
    const hb = await acts.provisionSandbox({ sessionId: b, spec: { network } });
    const hc = await acts.provisionSandbox({ sessionId: c });
    assert.equal(ha.runtime?.network, `egress proxy: ${INTERNET}:${port}`);
    assert.equal(hc.runtime?.network, 'none');
    // Under gVisor a networked sandbox runs under runsc-net; one without network stays on runsc (--network=none).
    const dockerRuntimeOf = async (id: string) => (await docker.getContainer(id).inspect()).HostConfig.Runtime;
    assert.equal(await dockerRuntimeOf(ha.containerId), isGvisor(testRuntime()) ? GVISOR_NET_RUNTIME : testRuntime());
    assert.equal(await dockerRuntimeOf(hc.containerId), testRuntime());

    // A listens; B tries A's sandbox and A's proxy, directly and through its own proxy.
    await shell(ha.containerId, 'nohup python3 -m http.server 8000 >/dev/null 2>&1 & sleep 1');
    const addressOf = async (container: string, net: string) => (await docker.getContainer(container).inspect()).NetworkSettings.Networks[net]!.IPAddress;
    const aSandbox = await addressOf(ha.containerId, egressNames(a).network);
    const aProxy = await addressOf(egressNames(a).proxy, egressNames(a).network);
    assert.match(await shell(ha.containerId, connect('127.0.0.1', 8000)), /^connected/m, 'A serves on 8000');
    assert.match(await shell(hb.containerId, connect(aSandbox, 8000)), /^failed/m, "B cannot reach A's sandbox");
    assert.match(await shell(hb.containerId, connect(aProxy, 3128)), /^failed/m, "B cannot reach A's proxy");
    assert.match(
      await shell(hb.containerId, `python3 -c "import urllib.request as u
try: u.urlopen('http://${aSandbox}:8000/', timeout=10)
except Exception as e: print(e)"`),
      /403/,
      "B's proxy refuses A's address",
    );
    // Nor the Docker host, on any address (the session network's bridge has none).
    assert.match(await shell(hb.containerId, connect(hostAddress, port)), /^failed/m);
    const gateway = (await docker.getNetwork(egressNames(b).network).inspect()).IPAM?.Config?.[0]?.Gateway as string;
    assert.match(await shell(hb.containerId, connect(gateway, port)), /^failed/m, "the session network's gateway address is not the host");
    const refused = await acts.runTool({ sessionId: b, handle: hb, call: { id: 'c1', name: 'shell', input: { command: 'true' } } });
    assert.equal(refused.network?.refused[0]?.reason, 'address-literal', 'reported with the next call');

    // C has no network at all: only loopback, no proxy, nothing reachable.
    // Listed by Python: coreutils ls fails there under Debian's gVisor (its statx refuses AT_NO_AUTOMOUNT).
    assert.equal((await shell(hc.containerId, `python3 -c 'import os; print(*sorted(os.listdir("/sys/class/net")))'`)).trim(), 'lo');
    assert.doesNotMatch(await shell(hc.containerId, 'env'), /_PROXY/i);
    assert.match(await shell(hc.containerId, connect(hostAddress, port)), /^failed/m);
    await assert.rejects(docker.getContainer(egressNames(c).proxy).inspect(), /404|no such container/i);

    await acts.destroySandbox({ sessionId: a });
    await assert.rejects(docker.getContainer(egressNames(a).proxy).inspect(), /404|no such container/i);
    await assert.rejects(docker.getNetwork(egressNames(a).network).inspect(), /404|not found/i);
  });

  test('the reaper removes the network and proxy of a session that is gone', async () => {
    const id = uniqueId('egress-orphan');
    sessions.push(id);
    await acts.provisionSandbox({ sessionId: id, spec: { network: { allow: [{ host: INTERNET }] } } });
    // Leave only the network and the proxy, as a worker dying halfway through teardown would.
    await docker.getContainer(`keel-${id}`).remove({ force: true });
    const reaped = await reapOrphans(docker, async (s) => s !== id, { hostId });
    assert.deepEqual(reaped, [id]);
    await assert.rejects(docker.getContainer(egressNames(id).proxy).inspect(), /404|no such container/i);
    await assert.rejects(docker.getNetwork(egressNames(id).network).inspect(), /404|not found/i);
  });

  test('the warm pool never serves a networked session', async () => {
    const poolRuntime = new SandboxRuntime(docker);
    const pool = new WarmPool(poolRuntime, { hostId, image: tag, size: 1, runtime: testRuntime() });
    const pooled = createSandboxActivities({ runtime: poolRuntime, blobs: new DirBlobStore(blobDir), config: { hostId, defaultImage: tag, defaultRuntime: testRuntime() }, pools: [pool] });
    const id = uniqueId('egress-pool');
    sessions.push(id);
    try {
      await pool.ready();
      const h = await pooled.provisionSandbox({ sessionId: id, spec: { network: { allow: [{ host: INTERNET }] } } });
      const info = await docker.getContainer(h.containerId).inspect();
      assert.equal(info.Config.Labels['keel.pool'], undefined, 'a container of its own, not a pool one');
      assert.equal(info.HostConfig.NetworkMode, egressNames(id).network);
      await pooled.destroySandbox({ sessionId: id });
    } finally {
      await poolRuntime.close();
    }
  });
});
