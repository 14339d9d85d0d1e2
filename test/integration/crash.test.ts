/**
 * Crash test: the worker process is killed with SIGKILL while a tool call runs;
 * a new worker process picks the session up and it completes with the same
 * final workspace as an uninterrupted run, and no duplicate or missing events.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import Docker from 'dockerode';
import { after, before, test } from 'node:test';
import type { Sql } from 'postgres';
import { KeelClient } from '../../client';
import { getEvents } from '../../store';
import type { ScriptTurn } from '../../common/types';
import { connectDatabase } from '../../workers/services';
import { testConfig, uniqueId } from '../helpers/env';
import { ensureSandboxImage } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { spawnWorker, type WorkerProcess } from '../helpers/processes';
import { TestTemporal } from '../helpers/temporal';

const script: ScriptTurn[] = [
  { toolCalls: [{ name: 'write_file', input: { path: 'data/a.txt', content: 'alpha\n' } }] },
  { toolCalls: [{ name: 'shell', input: { command: 'echo start >> /workspace/log.txt; sleep 5; echo end >> /workspace/log.txt' } }] },
  { toolCalls: [{ name: 'shell', input: { command: 'cd /workspace && find . -type f | sort | xargs sha256sum && echo --- && cat log.txt' } }] },
  { text: 'done' },
];
const spec = { task: 'crash test', model: { provider: 'scripted' as const, model: 'crash', script } };

let temporal: TestTemporal;
let client: KeelClient;
let sql: Sql;
let env: Record<string, string>;
const workers: WorkerProcess[] = [];

before(async () => {
  await ensureSandboxImage(new Docker());
  temporal = await TestTemporal.start();
  env = { TEMPORAL_ADDRESS: temporal.address, KEEL_HOST_ID: uniqueId('crash-host') };
  const config = testConfig(temporal.address);
  client = await KeelClient.connect({ address: config.temporalAddress });
  sql = await connectDatabase(config);
});

after(async () => {
  for (const w of workers) await w.kill('SIGTERM');
  await client?.close();
  await sql?.end({ timeout: 2 });
  await temporal?.down();
});

test('a worker killed with SIGKILL mid-tool-call costs no step and runs no command twice', async () => {
  const first = await spawnWorker(env);
  workers.push(first);

  const crashed = await client.start(spec, { sessionId: uniqueId('crash') });
  await waitForEvent(sql, crashed, (e) => e.type === 'tool.call' && e.data.name === 'shell');
  await new Promise((r) => setTimeout(r, 1500)); // the command is now running inside the sandbox
  await first.kill('SIGKILL');

  const second = await spawnWorker(env);
  workers.push(second);
  const result = await client.result(crashed);
  assert.equal(result.status, 'completed', result.error);

  // A fault-free run of the same script, for comparison.
  const clean = await client.start(spec, { sessionId: uniqueId('clean') });
  assert.equal((await client.result(clean)).status, 'completed');

  const [crashedEvents, cleanEvents] = [await getEvents(sql, crashed), await getEvents(sql, clean)];
  assert.deepEqual(crashedEvents.map((e) => e.seq), crashedEvents.map((_, i) => i + 1), 'no gaps or duplicates');
  assert.deepEqual(crashedEvents.map((e) => e.type), cleanEvents.map((e) => e.type), 'same steps as the clean run');

  const digest = (events: typeof crashedEvents) =>
    String(events.filter((e) => e.type === 'tool.result').at(-1)?.data.output);
  assert.equal(digest(crashedEvents), digest(cleanEvents), 'same final workspace, byte for byte');
  // The command appended to log.txt exactly once, although its activity ran twice.
  assert.match(digest(crashedEvents), /---\nstart\nend\n?$/);
  assert.equal(crashedEvents.filter((e) => e.type === 'tool.call').length, 3, 'one tool.call event per call');
  // And the kill really interrupted it: the shell activity needed a second attempt.
  const history = await client.temporal.workflow.getHandle(crashed).fetchHistory();
  const retried = history.events?.some((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 1) > 1);
  assert.ok(retried, 'an activity was retried after the worker died');
});

test('a worker SIGKILLed while a call waits for approval loses nothing: the answer reaches a new worker and the call runs once', async () => {
  const first = await spawnWorker(env);
  workers.push(first);
  const id = await client.start(
    {
      task: 'push after approval',
      model: {
        provider: 'scripted',
        model: 'crash-approval',
        script: [
          { toolCalls: [{ name: 'write_file', input: { path: 'notes.txt', content: 'before\n' } }] },
          { toolCalls: [{ name: 'shell', input: { command: 'git push 2>/dev/null; echo pushed >> /workspace/push.log' } }] },
          { toolCalls: [{ name: 'shell', input: { command: 'cat /workspace/notes.txt /workspace/push.log' } }] },
          { text: 'done' },
        ],
      },
      policy: { rules: [{ tool: 'shell', command: 'git push', action: 'ask' }] },
    },
    { sessionId: uniqueId('crash-approval') },
  );
  await waitForEvent(sql, id, (e) => e.type === 'approval.requested');
  await first.kill('SIGKILL');

  const second = await spawnWorker(env);
  workers.push(second);
  // The new worker rebuilds the waiting session from its history and takes the answer.
  await client.approve(id, 'call_1_0', { by: 'dana' });
  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(sql, id);
  assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1), 'no gaps or duplicates');
  assert.equal(events.filter((e) => e.type === 'approval.requested').length, 1, 'asked once');
  const last = events.filter((e) => e.type === 'tool.result').at(-1);
  assert.equal(last?.type === 'tool.result' ? last.data.output : '', 'before\npushed\n', 'the files survived and the call ran once');
});
