/** Telemetry's pieces that need no services: config, metric helpers, the metrics endpoint, JSON log lines. */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { fieldsOf, jsonLogger, temporalLogger } from '../../telemetry/log';
import { outcomeOf, registry, timed } from '../../telemetry/metrics';
import { serveMetrics } from '../../telemetry/worker';
import { loadConfig } from '../../workers/config';

test('tracing is off unless an OTLP endpoint is set; the traces URL is derived as the OTel spec says', () => {
  assert.equal(loadConfig({}).tracesUrl, undefined);
  assert.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracesUrl, 'http://collector:4318/v1/traces');
  assert.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:9/t' }).tracesUrl, 'http://b:9/t');
  assert.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318', OTEL_SDK_DISABLED: 'true' }).tracesUrl, undefined);
  assert.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318', OTEL_TRACES_EXPORTER: 'none' }).tracesUrl, undefined);
  assert.throws(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }), /must be an http\(s\) URL/);
  assert.equal(loadConfig({ OTEL_SERVICE_NAME: 'svc' }).serviceName, 'svc');
});

test('KEEL_METRICS_PORT and KEEL_LOG_FORMAT are checked', () => {
  assert.equal(loadConfig({}).metricsPort, undefined);
  assert.equal(loadConfig({ KEEL_METRICS_PORT: '9464' }).metricsPort, 9464);
  assert.throws(() => loadConfig({ KEEL_METRICS_PORT: 'x' }), /KEEL_METRICS_PORT must be an integer/);
  assert.equal(loadConfig({}).logFormat, 'json');
  assert.equal(loadConfig({ KEEL_LOG_FORMAT: 'text' }).logFormat, 'text');
  assert.throws(() => loadConfig({ KEEL_LOG_FORMAT: 'xml' }), /KEEL_LOG_FORMAT must be json or text/);
});

test('timed() records the outcome: ok, a mapped value, or the failure type', async () => {
  const r = new Registry();
  const h = new Histogram({ name: 't_seconds', help: 'h', labelNames: ['tool', 'outcome'] as const, registers: [r] });
  await timed(h, { tool: 'a' }, async () => 1);
  await timed(h, { tool: 'a' }, async () => false, (v) => (v ? 'ok' : 'tool_error'));
  await assert.rejects(timed(h, { tool: 'a' }, async () => { throw Object.assign(new Error('x'), { type: 'Sandbox.Gone' }); }));
  const text = await r.metrics();
  for (const outcome of ['ok', 'tool_error', 'Sandbox.Gone']) assert.match(text, new RegExp(`t_seconds_count\\{tool="a",outcome="${outcome.replace('.', '\\.')}"\\} 1`));
  assert.equal(outcomeOf(new TypeError('t')), 'TypeError');
  assert.equal(outcomeOf('s'), 'error');
});

test('the worker endpoint serves the registry at GET /metrics only', async () => {
  const server = await serveMetrics(0, '127.0.0.1');
  try {
    const ok = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('content-type'), registry.contentType);
    const body = await ok.text();
    for (const name of ['keel_tool_call_duration_seconds', 'keel_model_call_duration_seconds', 'keel_model_tokens_total', 'keel_model_cost_usd_total', 'keel_snapshot_duration_seconds', 'keel_snapshot_bytes_total', 'keel_restore_duration_seconds', 'keel_restore_bytes_total', 'keel_sessions', 'keel_sandboxes_live', 'process_cpu_seconds_total']) {
      assert.match(body, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    assert.equal((await fetch(`http://127.0.0.1:${server.port}/other`)).status, 404);
  } finally {
    await server.close();
  }
});

test("Temporal's log entries become JSON lines with the workflow id as sessionId", () => {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done(); } });
  const log = jsonLogger('keel-worker', 'DEBUG', sink);
  const logger = temporalLogger(log, 'DEBUG', /^skip/);
  logger.info('Activity completed', { workflowId: 's-1', activityType: 'runTool', taskToken: 'secret-ish' });
  logger.warn('skip me');
  log.child({ sessionId: 's-2' }).error('request failed');
  const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(parsed.length, 2);
  assert.deepEqual([parsed[0]!.msg, parsed[0]!.sessionId, parsed[0]!.activityType, parsed[0]!.level, parsed[0]!.name], ['Activity completed', 's-1', 'runTool', 30, 'keel-worker']);
  assert.equal(parsed[0]!.taskToken, undefined);
  assert.equal(parsed[1]!.sessionId, 's-2');
  assert.deepEqual(fieldsOf(undefined), {});
});
