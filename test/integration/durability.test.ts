/**
 * Sandbox state is as durable as the workflow: commands run once even when the
 * worker dies at the worst moment, a killed container is restored from the last
 * snapshot, and a dead sandbox host's sessions move to another host.
 * Real Temporal, Docker and Postgres; workers in their own processes.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import type { Sql } from 'postgres';
import { KeelClient } from '../../client';
import { getEvents } from '../../store';
import type { EventRow } from '../../common/events';
import type { ScriptTurn, SessionSpec } from '../../common/types';
import { connectDatabase } from '../../workers/services';
import { ensureSandboxImage, sessionContainers, testConfig, uniqueId } from '../helpers/env';
import { recordHistory as record } from '../helpers/history';
import { waitForEvent } from '../helpers/events';
import { spawnWorker, type WorkerProcess } from '../helpers/processes';
import { TestTemporal } from '../helpers/temporal';

let temporal: TestTemporal;
let client: KeelClient;
let sql: Sql;
const docker = new Docker();
const processes: WorkerProcess[] = [];

before(async () => {
  await ensureSandboxImage(docker);
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

async function worker(env: Record<string, string>): Promise<WorkerProcess> {
  const p = await spawnWorker({ TEMPORAL_ADDRESS: temporal.address, KEEL_REAP_INTERVAL_SEC: '0', ...env });
  processes.push(p);
  return p;
}

const recordHistory = (id: string, file: string) => record(client.temporal, id, file);

const DIGEST = { name: 'shell', input: { command: 'cd /workspace && find . -type f | sort | xargs -r sha256sum' } };
const spec = (script: ScriptTurn[], extra: Partial<SessionSpec> = {}): SessionSpec => ({
  task: 'durability test',
  model: { provider: 'scripted', model: 'durability', script },
  ...extra,
});

const waitFor = (id: string, pred: (e: EventRow) => boolean) => waitForEvent(sql, id, pred);

const lastOutput = (events: EventRow[]) => String(events.filter((e) => e.type === 'tool.result').at(-1)?.data.output);

function assertNoGaps(events: EventRow[]) {
  assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1), 'events have no gaps or duplicates');
}

test('a worker killed after the command finished but before the activity completed does not run it twice', async () => {
  await stopWorkers();
  const host = uniqueId('once-host');
  const doomed = await worker({ KEEL_HOST_ID: host, KEEL_TEST_KILL_AFTER_TOOL: 'once.txt' });
  const script: ScriptTurn[] = [
    { toolCalls: [{ name: 'shell', input: { command: 'echo line >> /workspace/once.txt' } }] },
    { toolCalls: [{ name: 'shell', input: { command: 'cat /workspace/count 2>/dev/null; wc -l < /workspace/once.txt' } }] },
    { text: 'done' },
  ];
  const id = await client.start(spec(script), { sessionId: uniqueId('once') });
  await new Promise<void>((resolve) => doomed.child.once('exit', () => resolve()));
  assert.match(doomed.output(), /fault: SIGKILL/);

  await worker({ KEEL_HOST_ID: host });
  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(sql, id);
  assert.equal(lastOutput(events).trim(), '1', 'the line was appended exactly once');
  assertNoGaps(events);
  const history = await client.temporal.workflow.getHandle(id).fetchHistory();
  assert.ok(history.events?.some((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 1) > 1), 'the activity was retried');
});

test('a container killed mid-command is restored from the snapshot before the command, which runs again there', async () => {
  await stopWorkers();
  await worker({ KEEL_HOST_ID: uniqueId('kill-host') });
  const script: ScriptTurn[] = [
    { toolCalls: [{ name: 'write_file', input: { path: 'src/a.txt', content: 'alpha\n' } }] },
    { toolCalls: [{ name: 'shell', input: { command: 'mkdir -p out && cd out && export STAGE=two && echo x >> log.txt && sleep 4 && echo y >> log.txt' } }] },
    { toolCalls: [{ name: 'shell', input: { command: 'echo "$STAGE $(pwd)"' } }] },
    { toolCalls: [DIGEST] },
    { text: 'done' },
  ];
  const clean = await client.start(spec(script), { sessionId: uniqueId('clean') });
  assert.equal((await client.result(clean)).status, 'completed');

  const id = await client.start(spec(script), { sessionId: uniqueId('killed') });
  await waitFor(id, (e) => e.type === 'tool.call' && String((e.data.input as { command?: string }).command).includes('sleep 4'));
  await new Promise((r) => setTimeout(r, 1500));
  const [container] = await sessionContainers(docker, id);
  assert.ok(container, 'the session has a container');
  await docker.getContainer(container.id).kill();

  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const [events, cleanEvents] = [await getEvents(sql, id), await getEvents(sql, clean)];
  assertNoGaps(events);
  const restored = events.filter((e) => e.type === 'sandbox.restored');
  assert.equal(restored.length, 1, 'restored once');
  assert.equal(events.filter((e) => e.type === 'tool.result').length, 4, 'the loss is not a step the model sees');
  const shellState = events.filter((e) => e.type === 'tool.result')[2];
  assert.equal(String(shellState?.data.output).trim(), 'two /workspace/out', 'cwd and exports came back with the snapshot');
  assert.equal(lastOutput(events), lastOutput(cleanEvents), 'same final workspace as a fault-free run, byte for byte');
  assert.deepEqual(await sessionContainers(docker, id), [], 'no container left behind');
  await recordHistory(id, 'restore-session.json');
});

test('when a sandbox host stops for good, its sessions continue on another host', async () => {
  await stopWorkers();
  await worker({ KEEL_WORKER_ROLE: 'session' });
  const hostA = uniqueId('host-a');
  const hostB = uniqueId('host-b');
  const workers = new Map([
    [hostA, await worker({ KEEL_WORKER_ROLE: 'sandbox', KEEL_HOST_ID: hostA })],
    [hostB, await worker({ KEEL_WORKER_ROLE: 'sandbox', KEEL_HOST_ID: hostB })],
  ]);
  const script: ScriptTurn[] = [
    { toolCalls: [{ name: 'write_file', input: { path: 'notes.md', content: '# before\n' } }] },
    { toolCalls: [{ name: 'shell', input: { command: 'sleep 3 && echo after >> notes.md' } }] },
    { toolCalls: [{ name: 'read_file', input: { path: 'notes.md' } }] },
    { text: 'done' },
  ];
  const id = await client.start(spec(script, { sandbox: { hostTimeoutSec: 5 } }), { sessionId: uniqueId('failover') });
  const provisioned = await waitForEvent(sql, id, (e) => e.type === 'sandbox.provisioned');
  const first = String(provisioned.data.hostId);
  await waitFor(id, (e) => e.type === 'tool.call' && e.data.name === 'shell');
  await workers.get(first)!.kill('SIGKILL');

  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(sql, id);
  assertNoGaps(events);
  const restored = events.find((e) => e.type === 'sandbox.restored');
  assert.ok(restored, 'the sandbox was restored');
  assert.notEqual(restored.data.hostId, first, 'on the other host');
  const read = events.filter((e) => e.type === 'tool.result').at(-1);
  assert.match(String(read?.data.output), /# before[\s\S]*after/);
});
