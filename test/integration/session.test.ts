/**
 * Whole sessions on a real Temporal dev server, real Docker and real Postgres.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Worker } from '@temporalio/worker';
import Docker from 'dockerode';
import type { Sql } from 'postgres';
import { KeelClient, SessionError } from '../../client';
import { getEvents, getSession } from '../../store';
import { eventsOfType } from '../../common/events';
import type { ScriptTurn, SessionSpec } from '../../common/types';
import { demoSpec } from '../../cli/sessions';
import { connectDatabase, connectDocker } from '../../workers/services';
import { createWorkers, type KeelWorkers } from '../../workers/worker';
import { sessionContainers, testConfig, uniqueId, workflowBundle } from '../helpers/env';
import { ensureSandboxImage } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { recordHistory } from '../helpers/history';
import { TestTemporal } from '../helpers/temporal';

let temporal: TestTemporal;
let workers: KeelWorkers;
let running: Promise<void>;
let client: KeelClient;
let sql: Sql;
let docker: Docker;

before(async () => {
  await ensureSandboxImage(new Docker());
  temporal = await TestTemporal.start();
  const config = testConfig(temporal.address, { KEEL_HOST_ID: uniqueId('host') });
  workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  running = workers.run();
  client = await KeelClient.connect({ address: config.temporalAddress });
  sql = await connectDatabase(config);
  docker = await connectDocker(config);
});

after(async () => {
  await workers?.shutdown();
  await running;
  await client?.close();
  await sql?.end({ timeout: 2 });
  await temporal?.down();
});

const scripted = (script: ScriptTurn[]): SessionSpec => ({ task: 'integration test', model: { provider: 'scripted', model: 'test', script } });

async function run(spec: SessionSpec) {
  const id = await client.start(spec, { sessionId: uniqueId('it') });
  const result = await client.result(id);
  const events = await getEvents(sql, id);
  return { id, result, events };
}

test('the demo session completes in a real sandbox and records every step in order', async () => {
  const { id, result, events } = await run(demoSpec());
  assert.equal(result.status, 'completed', result.error);
  assert.equal(result.toolCalls, 6);

  assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1), 'seq is 1..n: no gaps, no duplicates');
  for (let i = 1; i < events.length; i++) assert.ok(events[i]!.at >= events[i - 1]!.at, 'timestamps follow seq');
  const types = events.map((e) => e.type);
  assert.deepEqual(types.slice(0, 2), ['session.started', 'sandbox.provisioned']);
  assert.deepEqual(types.slice(-2), ['sandbox.removed', 'session.ended']);
  assert.equal(types.filter((t) => t === 'model.call').length, 6);
  assert.equal(types.filter((t) => t === 'tool.call').length, 6);
  assert.equal(types.filter((t) => t === 'tool.result').length, 6);
  for (const m of events.filter((e) => e.type === 'model.call')) {
    const usage = m.data.usage as { inputTokens: number; outputTokens: number };
    assert.ok(usage.inputTokens > 0 && usage.outputTokens > 0, 'token usage recorded');
  }

  const shells = eventsOfType(events, 'tool.result').filter((e) => e.data.name === 'shell');
  assert.equal(shells[0]?.data.exitCode, 1, 'first test run fails');
  assert.match(String(shells[0]?.data.output), /FAIL/);
  assert.equal(shells[1]?.data.exitCode, 0, 'second test run passes');
  assert.match(String(shells[1]?.data.output), /Ran 4 tests[\s\S]*OK/);

  const session = await getSession(sql, id);
  assert.equal(session?.status, 'completed');
  assert.deepEqual(await sessionContainers(docker, id), [], 'container removed at the end');

  // The history of this session replays against the current workflow code.
  const history = await client.temporal.workflow.getHandle(id).fetchHistory();
  await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, id);
  await recordHistory(client.temporal, id, 'demo-session.json');
});

test('the shell keeps its working directory and exported variables between calls', async () => {
  const { result, events } = await run(
    scripted([
      { toolCalls: [{ name: 'shell', input: { command: 'mkdir -p /tmp/work/sub && cd /tmp/work/sub && export GREETING=hello' } }] },
      { toolCalls: [{ name: 'shell', input: { command: 'pwd; echo "$GREETING"' } }] },
      { text: 'done' },
    ]),
  );
  assert.equal(result.status, 'completed', result.error);
  const outputs = events.filter((e) => e.type === 'tool.result').map((e) => String(e.data.output).trim());
  assert.equal(outputs[1], '/tmp/work/sub\nhello');
});

test('bad arguments and unknown tools become error results and the session goes on', async () => {
  const { result, events } = await run(
    scripted([
      {
        toolCalls: [
          { name: 'write_file', input: { path: 'notes.txt' } },
          { name: 'format_disk', input: {} },
          { name: 'edit_file', input: { path: 'missing.txt', old_string: 'a', new_string: 'b' } },
        ],
      },
      { toolCalls: [{ name: 'write_file', input: { path: 'notes.txt', content: 'fine\n' } }] },
      { toolCalls: [{ name: 'shell', input: { command: 'cat notes.txt' } }] },
      { text: 'recovered' },
    ]),
  );
  assert.equal(result.status, 'completed', result.error);
  const results = events.filter((e) => e.type === 'tool.result').map((e) => e.data);
  assert.equal(results[0]?.error, 'InvalidArguments');
  assert.match(String(results[0]?.output), /content/);
  assert.equal(results[1]?.error, 'UnknownTool');
  assert.equal(results[2]?.ok, false, 'editing a missing file is an error result');
  assert.equal(results[4]?.output, 'fine\n');
});

test('cancel stops a running command, removes the container and records why', async () => {
  const id = await client.start(scripted([{ toolCalls: [{ name: 'shell', input: { command: 'sleep 120' } }] }, { text: 'never' }]), {
    sessionId: uniqueId('cancel'),
  });
  await waitForEvent(sql, id, (e) => e.type === 'tool.call');
  await client.cancel(id, 'test wants it stopped');
  const result = await client.result(id);
  assert.equal(result.status, 'cancelled');
  const events = await getEvents(sql, id);
  const ended = events.find((e) => e.type === 'session.ended');
  assert.equal(ended?.data.reason, 'test wants it stopped');
  const interrupted = events.find((e) => e.type === 'tool.result');
  assert.equal(interrupted?.data.error, 'Cancelled', 'the interrupted call has a result too');
  assert.equal((await getSession(sql, id))?.status, 'cancelled');
  assert.deepEqual(await sessionContainers(docker, id), []);
});

test('starting an existing session id is refused with a clear error', async () => {
  const { id } = await run(scripted([{ text: 'hi' }]));
  await assert.rejects(client.start(scripted([{ text: 'again' }]), { sessionId: id }), (err: unknown) => {
    assert.ok(err instanceof SessionError);
    assert.match(err.message, /already exists/);
    return true;
  });
});
