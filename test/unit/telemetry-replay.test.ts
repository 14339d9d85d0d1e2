/**
 * Tracing changes no workflow command: every recorded history (made without tracing) replays against
 * the workflow code bundled with Temporal's OpenTelemetry workflow interceptors, with the span sink
 * registered. So a worker can turn tracing on or off while sessions are running.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Resource } from '@opentelemetry/resources';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { temporal } from '@temporalio/proto';
import { bundleWorkflowCode, Worker } from '@temporalio/worker';
import '../helpers/quiet';
import { tracingSinks, WORKFLOW_TRACING_MODULE } from '../../telemetry/worker';

const dir = join(__dirname, '..', 'histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
const noop = () => undefined;
let bundle: Promise<{ code: string }> | undefined;
const tracedBundle = () =>
  (bundle ??= bundleWorkflowCode({
    workflowsPath: require.resolve('../../workflows'),
    workflowInterceptorModules: [WORKFLOW_TRACING_MODULE],
    logger: { trace: noop, debug: noop, info: noop, warn: noop, error: console.error, log: noop },
  }));

test('the traced bundle contains the OpenTelemetry workflow interceptors', async () => {
  assert.match((await tracedBundle()).code, /OpenTelemetryInboundInterceptor/);
});

for (const file of files) {
  test(`${file} replays with the tracing interceptors bundled`, async () => {
    const history = temporal.api.history.v1.History.fromObject(JSON.parse(readFileSync(join(dir, file), 'utf8')) as Record<string, unknown>);
    const exporter = new InMemorySpanExporter();
    const processor = new SimpleSpanProcessor(exporter);
    const tracing = { processor, resource: new Resource({ 'service.name': 'replay' }), shutdown: async () => {} };
    // The recorded workflow id: an eval names its children after its own id.
    const workflowId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowId || file;
    await Worker.runReplayHistory({ workflowBundle: await tracedBundle(), sinks: tracingSinks(tracing)! }, history, workflowId);
  });
}
