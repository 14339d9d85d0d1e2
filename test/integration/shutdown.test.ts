/**
 * Graceful worker shutdown, on a real worker process: SIGTERM stops polling and lets the running tool call
 * finish, so nothing is retried; a second SIGTERM exits at once, and the interrupted call is retried by the
 * next worker and still runs once. Real Temporal, Docker and Postgres.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import type { Sql } from 'postgres';
import { KeelClient } from '../../client';
import { getEvents } from '../../store';
import type { ScriptTurn } from '../../common/types';
import { connectDatabase } from '../../workers/services';
import { ensureSandboxImage, testConfig, uniqueId } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { spawnWorker, type WorkerProcess } from '../helpers/processes';
import { TestTemporal } from '../helpers/temporal';

let temporal: TestTemporal;
let client: KeelClient;
let sql: Sql;
const processes: WorkerProcess[] = [];

before(async () => {
  await ensureSandboxImage(new Docker());
  temporal = await TestTemporal.start();
  const config = testConfig(temporal.address);
  client = await KeelClient.connect({ address: config.temporalAddress });
  sql = await connectDatabase(config);
});

after(async () => {
  for (const p of processes) await p.kill('SIGKILL');
  await client?.close();
  await sql?.end({ timeout: 2 });
  await temporal?.down();
});

/** Each test starts its own workers: none of another test's may take its tasks. */
async function stopWorkers(): Promise<void> {
  for (const p of processes.splice(0)) await p.kill('SIGKILL');
}

async function worker(host: string): Promise<WorkerProcess> {
  const p = await spawnWorker({ TEMPORAL_ADDRESS: temporal.address, KEEL_HOST_ID: host, KEEL_REAP_INTERVAL_SEC: '0', KEEL_SHUTDOWN_GRACE_SEC: '30' });
  processes.push(p);
  return p;
}

const script: ScriptTurn[] = [
  { toolCalls: [{ name: 'shell', input: { command: 'echo start >> /workspace/log.txt; sleep 5; echo end >> /workspace/log.txt' } }] },
  { toolCalls: [{ name: 'shell', input: { command: 'cat /workspace/log.txt' } }] },
  { text: 'done' },
];
const spec = { task: 'shutdown test', model: { provider: 'scripted' as const, model: 'shutdown', script } };

/** Resolves with the time from now until the process exits. */
function exitTime(p: WorkerProcess): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve) => p.child.once('exit', () => resolve(Date.now() - t0)));
}

async function retried(id: string): Promise<boolean> {
  const history = await client.temporal.workflow.getHandle(id).fetchHistory();
  return Boolean(history.events?.some((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 1) > 1));
}

test('SIGTERM lets the running tool call finish, then the worker exits; the next worker carries on without a retry', async () => {
  await stopWorkers();
  const host = uniqueId('graceful-host');
  const first = await worker(host);
  const id = await client.start(spec, { sessionId: uniqueId('graceful') });
  await waitForEvent(sql, id, (e) => e.type === 'tool.call' && e.data.name === 'shell');
  await new Promise((r) => setTimeout(r, 1000)); // the command is running in the sandbox
  const exited = exitTime(first);
  first.child.kill('SIGTERM');
  const waited = await exited;
  assert.equal(first.child.exitCode, 0, first.output());
  assert.ok(waited > 2000, `the worker waited for the command (${waited} ms)`);
  assert.match(first.output(), /SIGTERM; no new tasks/);

  await worker(host);
  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(sql, id);
  assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1), 'no gaps or duplicates');
  assert.equal(String(events.filter((e) => e.type === 'tool.result').at(-1)?.data.output), 'start\nend\n');
  assert.equal(await retried(id), false, 'no activity needed a second attempt');
});

test('a second SIGTERM exits at once; the interrupted call is retried by the next worker and runs once', async () => {
  await stopWorkers();
  const host = uniqueId('impatient-host');
  const first = await worker(host);
  const id = await client.start(spec, { sessionId: uniqueId('impatient') });
  await waitForEvent(sql, id, (e) => e.type === 'tool.call' && e.data.name === 'shell');
  await new Promise((r) => setTimeout(r, 1000));
  const exited = exitTime(first);
  first.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  first.child.kill('SIGTERM');
  const waited = await exited;
  assert.ok(waited < 2500, `exited without waiting for the command (${waited} ms)`);
  assert.match(first.output(), /second SIGTERM; exiting now/, `exit ${first.child.exitCode} ${first.child.signalCode} after ${waited} ms`);

  await worker(host);
  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(sql, id);
  assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1), 'no gaps or duplicates');
  assert.equal(String(events.filter((e) => e.type === 'tool.result').at(-1)?.data.output), 'start\nend\n', 'the command ran once');
  assert.equal(await retried(id), true, 'the interrupted call was retried');
});
