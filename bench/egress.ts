/**
 * What a network costs a session, each figure beside its baseline from the same run:
 * - provision and destroy of a networked sandbox (its network and proxy too) vs one without network;
 * - one tool call (`echo hi` through `runTool`, which also collects the proxy's refusals) vs the same
 *   call in a sandbox without network;
 * - one HTTP GET from the sandbox through the proxy to a server on the Docker host, vs a GET inside
 *   the sandbox to a server on its own loopback (same client, no proxy).
 * Medians and ratios; nothing is asserted. Run: `node --import tsx bench/egress.ts`
 * (env BENCH_SANDBOXES, default 5; BENCH_CALLS, default 100).
 */
import '../test/helpers/quiet';
import { createServer } from 'node:http';
import Docker from 'dockerode';
import { createSandboxActivities } from '../activities/sandbox';
import type { SandboxSpec } from '../common/types';
import { defaultImageTag, ensureEgressNetwork, SandboxRuntime } from '../host';
import { scratchBlobs, uniqueId } from '../test/helpers/env';
import { summarize, timed, type Summary } from './stats';

const SANDBOXES = Number(process.env.BENCH_SANDBOXES ?? 5);
const CALLS = Number(process.env.BENCH_CALLS ?? 100);

async function main() {
  const docker = new Docker();
  const server = createServer((_req, res) => res.end('ok\n'));
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
  const port = (server.address() as { port: number }).port;
  const gateway = await ensureEgressNetwork(docker);
  if (!gateway) throw new Error('the egress network has no gateway');
  const runtime = new SandboxRuntime(docker);
  const acts = createSandboxActivities({
    runtime,
    blobs: scratchBlobs(),
    config: { hostId: 'bench-egress', hostQueue: 'bench-egress', defaultImage: defaultImageTag(), egress: { headers: {}, resolve: { 'internet.bench.test': gateway } } },
  });
  const networked: SandboxSpec = { network: { allow: [{ host: 'internet.bench.test', ports: [port] }] } };
  const rows: Array<[string, Summary, string, Summary]> = [];

  const up = { plain: [] as number[], net: [] as number[] };
  const down = { plain: [] as number[], net: [] as number[] };
  for (let i = 0; i < SANDBOXES; i++) {
    for (const kind of ['plain', 'net'] as const) {
      const id = uniqueId(`bench-egress-${kind}`);
      up[kind].push((await timed(() => acts.provisionSandbox({ sessionId: id, ...(kind === 'net' ? { spec: networked } : {}) })))[0]);
      down[kind].push((await timed(() => acts.destroySandbox({ sessionId: id })))[0]);
    }
  }
  rows.push(['provision, networked', summarize(up.net), 'without network', summarize(up.plain)]);
  rows.push(['destroy, networked', summarize(down.net), 'without network', summarize(down.plain)]);

  const plainId = uniqueId('bench-egress-calls');
  const netId = uniqueId('bench-egress-calls-net');
  const plain = await acts.provisionSandbox({ sessionId: plainId });
  const net = await acts.provisionSandbox({ sessionId: netId, spec: networked });
  try {
    const call = async (sessionId: string, handle: { containerId: string }, i: number, command: string) =>
      acts.runTool({ sessionId, handle, call: { id: `c${i}-${Math.random()}`, name: 'shell', input: { command } } });
    const echo = { plain: [] as number[], net: [] as number[] };
    for (let i = 0; i < CALLS; i++) {
      echo.plain.push((await timed(() => call(plainId, plain, i, 'echo hi')))[0]);
      echo.net.push((await timed(() => call(netId, net, i, 'echo hi')))[0]);
    }
    rows.push(['tool call, networked', summarize(echo.net), 'without network', summarize(echo.plain)]);

    // One Python process per side, timing each GET; the first (connection setup, imports) is dropped.
    const loop = (url: string, proxied: boolean) => `python3 - <<'EOF'
import time, urllib.request
opener = urllib.request.build_opener(${proxied ? '' : 'urllib.request.ProxyHandler({})'})
out = []
for i in range(${CALLS + 1}):
    t = time.perf_counter(); opener.open("${url}").read(); out.append((time.perf_counter() - t) * 1000)
print(" ".join(f"{x:.3f}" for x in out[1:]))
EOF`;
    await call(plainId, plain, -1, 'nohup python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 & sleep 1');
    const samples = async (sessionId: string, handle: { containerId: string }, url: string, proxied: boolean) => {
      const r = await call(sessionId, handle, -2, loop(url, proxied));
      if (!r.ok) throw new Error(`request loop failed: ${r.output}`);
      return r.output.trim().split(/\s+/).map(Number);
    };
    const viaProxy = await samples(netId, net, `http://internet.bench.test:${port}/`, true);
    const local = await samples(plainId, plain, 'http://127.0.0.1:8000/', false);
    rows.push(['HTTP GET through the proxy', summarize(viaProxy), 'GET on the sandbox loopback', summarize(local)]);
  } finally {
    await acts.destroySandbox({ sessionId: plainId });
    await acts.destroySandbox({ sessionId: netId });
    await runtime.close();
    server.close();
  }

  console.log('| figure | p50 | p95 | baseline | baseline p50 | ratio |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const [figure, s, name, b] of rows) {
    console.log(`| ${figure} | ${s.p50.toFixed(1)} ms | ${s.p95.toFixed(1)} ms | ${name} | ${b.p50.toFixed(1)} ms | ${(s.p50 / b.p50).toFixed(2)}× |`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
