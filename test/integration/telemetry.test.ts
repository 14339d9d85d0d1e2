/**
 * Telemetry on real Temporal, Docker and Postgres: one scripted session, with tracing pointed at a
 * local OTLP/HTTP receiver, produces one trace whose spans cover each step (client start → workflow →
 * activities → the host-side executor call, snapshot and model call), parented into one tree; and
 * its metrics appear at the worker's `/metrics` (KEEL_METRICS_PORT) and at `keel serve`'s `/metrics`.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { bundleWorkflowCode } from '@temporalio/worker';
import Docker from 'dockerode';
import { buildApi } from '../../api/server';
import { KeelClient } from '../../client';
import type { SessionSpec } from '../../common/types';
import { connect, createApiKey, EventHub, migrate, type Sql } from '../../store';
import { DEFAULT_TENANT } from '../../common/defaults';
import { jsonLogger } from '../../telemetry/log';
import { clientTracingInterceptors } from '../../telemetry/tracing';
import { WORKFLOW_TRACING_MODULE } from '../../telemetry/worker';
import type { KeelConfig } from '../../workers/config';
import { connectDatabase, openBlobStore } from '../../workers/services';
import { createWorkers, type KeelWorkers } from '../../workers/worker';
import { ensureSandboxImage, testConfig, testOwnerUrl, uniqueId } from '../helpers/env';
import { startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver';
import { TestTemporal } from '../helpers/temporal';

let temporal: TestTemporal;
let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
let config: KeelConfig;
let workers: KeelWorkers;
let running: Promise<void>;
let client: KeelClient;
let sql: Sql;
let stopped = false;

before(async () => {
  await ensureSandboxImage(new Docker());
  // The API's tables (migration 4) as the owner role, as the API tests do.
  const owner = connect(testOwnerUrl());
  await migrate(owner);
  await owner.end({ timeout: 2 });
  receiver = await startOtlpReceiver();
  temporal = await TestTemporal.start();
  config = testConfig(temporal.address, {
    KEEL_HOST_ID: uniqueId('otel-host'),
    KEEL_REAP_INTERVAL_SEC: '0',
    KEEL_GC_INTERVAL_SEC: '0',
    KEEL_METRICS_PORT: '0',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_SERVICE_NAME: 'keel-telemetry-test',
  });
  const quiet = { trace: () => {}, debug: () => {}, info: () => {}, warn: () => {}, error: console.error, log: () => {} };
  const workflowBundle = await bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), workflowInterceptorModules: [WORKFLOW_TRACING_MODULE], logger: quiet });
  workers = await createWorkers(config, { workflowBundle });
  running = workers.run();
  // createWorkers started the process's tracing; the client's interceptor starts each session's trace.
  client = await KeelClient.connect({ address: config.temporalAddress, interceptors: clientTracingInterceptors() });
  sql = await connectDatabase(config);
});

async function stopWorkers(): Promise<void> {
  if (stopped) return;
  stopped = true;
  await workers.shutdown();
  await running; // closing the workers flushes the span processor
}

after(async () => {
  if (workers) await stopWorkers();
  await client?.close();
  await sql?.end({ timeout: 2 });
  await temporal?.down();
  await receiver?.close();
});

const spec: SessionSpec = {
  task: 'telemetry test',
  model: {
    provider: 'scripted',
    model: 'telemetry-test',
    script: [
      { toolCalls: [{ name: 'shell', input: { command: 'sleep 2; echo traced > traced.txt && cat traced.txt' } }] },
      { toolCalls: [{ name: 'write_file', input: { path: 'notes.md', content: 'hello' } }] },
      { text: 'done' },
    ],
  },
};

/** The value of the sample `name{labels}` in Prometheus text, or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

test('one session: its metrics at /metrics (worker and API), and one trace whose spans cover each step', async () => {
  const id = uniqueId('otel');
  await client.start(spec, { sessionId: id });
  // While it runs (its first command sleeps), this host's live sandbox shows in keel_sandboxes_live.
  assert.ok(workers.metricsPort, 'the worker serves /metrics');
  let live = 0;
  for (let i = 0; i < 100 && live === 0; i++) {
    const now = await (await fetch(`http://127.0.0.1:${workers.metricsPort}/metrics`)).text();
    live = sample(now, 'keel_sandboxes_live', { state: 'running', kind: 'session' }) ?? 0;
    if (live === 0) await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(live, 1, 'one running session sandbox on this host');
  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);

  // Worker endpoint (KEEL_METRICS_PORT=0: any free port).
  const res = await fetch(`http://127.0.0.1:${workers.metricsPort}/metrics`);
  assert.equal(res.status, 200);
  const text = await res.text();
  assert.ok((sample(text, 'keel_tool_call_duration_seconds_count', { tool: 'shell', outcome: 'ok' }) ?? 0) >= 1, 'shell call latency recorded');
  assert.ok((sample(text, 'keel_tool_call_duration_seconds_count', { tool: 'write_file', outcome: 'ok' }) ?? 0) >= 1, 'write_file call latency recorded');
  assert.ok((sample(text, 'keel_model_call_duration_seconds_count', { provider: 'scripted', model: 'telemetry-test', outcome: 'ok' }) ?? 0) >= 3, 'three model calls');
  assert.ok((sample(text, 'keel_model_tokens_total', { provider: 'scripted', model: 'telemetry-test', kind: 'output' }) ?? 0) > 0, 'tokens counted');
  assert.ok((sample(text, 'keel_snapshot_duration_seconds_count', { outcome: 'ok' }) ?? 0) >= 1, 'a snapshot timed');
  assert.ok((sample(text, 'keel_snapshot_bytes_total', { kind: 'changed' }) ?? 0) > 0, 'snapshot bytes counted');
  assert.ok((sample(text, 'keel_sessions', { status: 'completed' }) ?? 0) >= 1, 'sessions by status, from Postgres');
  assert.match(text, /^# TYPE keel_sandboxes_live gauge$/m);
  assert.match(text, /^# TYPE keel_restore_duration_seconds histogram$/m);

  // keel serve's /metrics: public (no API key), same registry; and its JSON request lines name the session.
  const store = openBlobStore(config);
  const hub = new EventHub(sql);
  const lines: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done(); } });
  const app = await buildApi({ sql, client, blobs: store.blobs, hub }, { loggerInstance: jsonLogger('keel-serve', 'INFO', sink) });
  try {
    const owner = connect(testOwnerUrl());
    const key = await createApiKey(owner, DEFAULT_TENANT).finally(() => owner.end({ timeout: 2 }));
    const got = await app.inject({ method: 'GET', url: `/sessions/${id}`, headers: { authorization: `Bearer ${key.key}` } });
    assert.equal(got.statusCode, 200, got.body);
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const done = logged.find((l) => l.msg === 'request completed');
    assert.equal(done?.sessionId, id, `request lines carry sessionId: ${lines.join('')}`);

    const api = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(api.statusCode, 200);
    assert.match(String(api.headers['content-type']), /^text\/plain/);
    assert.ok((sample(api.body, 'keel_tool_call_duration_seconds_count', { tool: 'shell', outcome: 'ok' }) ?? 0) >= 1);
    const denied = await app.inject({ method: 'GET', url: '/sessions' });
    assert.equal(denied.statusCode, 401, 'other routes still need a key');
  } finally {
    await app.close();
    await hub.close();
    store.close();
  }

  await stopWorkers();
  const start = receiver.spans.find((s) => s.name === 'StartWorkflow:agentSession' && s.attributes.temporalWorkflowId === id);
  assert.ok(start, `a StartWorkflow span for ${id}; got ${[...new Set(receiver.spans.map((s) => s.name))].join(', ')}`);
  const trace = receiver.spans.filter((s) => s.traceId === start.traceId);
  const names = new Set(trace.map((s) => s.name));
  for (const step of [
    'RunWorkflow:agentSession',
    'StartActivity:provisionSandbox',
    'RunActivity:provisionSandbox',
    'StartActivity:callModel',
    'RunActivity:callModel',
    'model scripted:telemetry-test',
    'StartActivity:runTool',
    'RunActivity:runTool',
    'executor shell',
    'executor write_file',
    'snapshot',
    'RunActivity:destroySandbox',
  ]) {
    assert.ok(names.has(step), `span ${step} in the session's trace; got ${[...names].join(', ')}`);
  }

  // One tree: every span but the root has its parent in the trace, and the executor spans hang under runTool.
  const byId = new Map(trace.map((s) => [s.spanId, s]));
  const roots = trace.filter((s) => !s.parentSpanId || !byId.has(s.parentSpanId));
  assert.deepEqual(roots.map((s) => s.name), ['StartWorkflow:agentSession']);
  const parentName = (s: ReceivedSpan) => byId.get(s.parentSpanId ?? '')?.name;
  for (const s of trace.filter((x) => x.name.startsWith('executor '))) {
    assert.equal(parentName(s), 'RunActivity:runTool');
    assert.equal(s.attributes['keel.session_id'], id);
  }
  assert.equal(parentName(trace.find((s) => s.name === 'RunWorkflow:agentSession')!), 'StartWorkflow:agentSession');
  assert.equal(parentName(trace.find((s) => s.name === 'RunActivity:runTool')!), 'StartActivity:runTool');
  assert.equal(parentName(trace.find((s) => s.name === 'model scripted:telemetry-test')!), 'RunActivity:callModel');
  assert.ok(trace.every((s) => s.service === 'keel-telemetry-test'));
});
