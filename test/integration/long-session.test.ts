/**
 * Long-horizon sessions on a real Temporal dev server, Docker and Postgres:
 * thousands of steps with bounded history, continue-as-new that loses and repeats
 * nothing, a context window that stays within its budget, and an index that
 * never says `running` for a workflow Temporal ended outside Keel.
 *
 *   node --import tsx --test test/integration/long-session.test.ts
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import { KeelClient } from '../../client';
import { readBlob } from '../../blobs';
import { BYTES_PER_TOKEN } from '../../common/context';
import { eventsOfType } from '../../common/events';
import type { ScriptTurn, SessionSpec } from '../../common/types';
import { historyBytes, reconcileSession, sessionHistories } from '../../inspect';
import { firstEvent, getEvents, getSession, type Sql } from '../../store';
import { connectDatabase, openBlobStore } from '../../workers/services';
import { reapOnce } from '../../workers/reaper';
import { createWorkers, type KeelWorkers } from '../../workers/worker';
import { ensureSandboxImage, sessionContainers, testConfig, uniqueId, workflowBundle } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { FakeLlmServer } from '../helpers/fake-llm-server';
import { recordHistory } from '../helpers/history';
import { spawnWorker, type WorkerProcess } from '../helpers/processes';
import { TestTemporal } from '../helpers/temporal';

let temporal: TestTemporal;
let workers: KeelWorkers;
let running: Promise<void>;
let client: KeelClient;
let sql: Sql;
let llm: FakeLlmServer;
let hostId: string;
const docker = new Docker();
const store = { close: () => undefined as void, blobs: undefined as unknown as ReturnType<typeof openBlobStore>['blobs'] };

before(async () => {
  await ensureSandboxImage(docker);
  temporal = await TestTemporal.start();
  hostId = uniqueId('long-host');
  const config = testConfig(temporal.address, { KEEL_HOST_ID: hostId, KEEL_REAP_INTERVAL_SEC: '0' });
  workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  running = workers.run();
  client = await KeelClient.connect({ address: config.temporalAddress });
  sql = await connectDatabase(config);
  Object.assign(store, openBlobStore(config));
  llm = await FakeLlmServer.start();
});

after(async () => {
  await workers?.shutdown();
  await running;
  await client?.close();
  await sql?.end({ timeout: 2 });
  await llm?.close();
  store.close();
  await temporal?.down();
});

const scripted = (script: ScriptTurn[], extra: Partial<SessionSpec> = {}): SessionSpec => ({
  task: 'long session test',
  model: { provider: 'scripted', model: 'long', script },
  ...extra,
});

function contiguous(events: Array<{ seq: number }>): void {
  assert.deepEqual(
    events.map((e) => e.seq),
    events.map((_, i) => i + 1),
    'event seqs are 1..n: no gaps, no duplicates',
  );
}

test('2,000 steps, some printing megabytes: completes, every run stays under 10 MB of history, events complete', { timeout: 1_800_000 }, async () => {
  const STEPS = 2000;
  const BIG = new Set([500, 1000, 1500]);
  llm.reset();
  llm.keepBodies = false;
  llm.respond((_body, n) => {
    if (n > STEPS) return { text: 'done' };
    const command = BIG.has(n) ? 'head -c 2400000 /dev/zero | tr "\\0" "k"' : `echo step ${n}`;
    return { toolCalls: [{ name: 'shell', args: { command } }], usage: { input: 50, output: 5 } };
  });
  const id = await client.start(
    { task: 'a very long task', model: { provider: 'openai-compatible', model: 'long-2000', baseURL: llm.url }, maxSteps: STEPS + 5 },
    { sessionId: uniqueId('long-2000') },
  );
  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);
  assert.equal(result.steps, STEPS + 1);
  assert.equal(result.toolCalls, STEPS);

  const events = await getEvents(sql, id);
  contiguous(events);
  const results = eventsOfType(events, 'tool.result');
  assert.equal(results.length, STEPS, 'one tool.result per call');
  assert.equal(eventsOfType(events, 'tool.call').length, STEPS);
  assert.ok(results.every((r) => r.data.ok), 'every call succeeded');
  // The big outputs are kept whole in the blob store; history and events carry a reference.
  for (const r of results.filter((e) => BIG.has(e.data.step))) {
    assert.ok(r.data.outputRef, `step ${r.data.step} output is stored by reference`);
    assert.ok((r.data.outputRef?.bytes ?? 0) >= 2_400_000, `step ${r.data.step} output kept whole (${r.data.outputRef?.bytes} bytes)`);
    assert.ok(r.data.output.length < 1000, 'the event holds a preview only');
  }

  const started = await firstEvent(sql, id, 'session.started');
  const runs = await sessionHistories(client.temporal, id, started?.data.workflowRunId ?? '');
  assert.ok(runs.length >= 2, `the session continued as new (${runs.length} runs)`);
  for (const run of runs) assert.ok(historyBytes(run.history) <= 10 * 1024 * 1024, `run ${run.runId} history ${historyBytes(run.history)} bytes`);
  assert.equal(eventsOfType(events, 'session.continued').length, runs.length - 1, 'every continuation is in the event log');
  assert.equal((await getSession(sql, id))?.status, 'completed');
});

test('continue-as-new keeps the container and runs every call once; nothing sent across the boundary is lost', { timeout: 300_000 }, async () => {
  const N = 8;
  const count = { name: 'shell', input: { command: 'echo x >> /workspace/n.txt; wc -l < /workspace/n.txt; sleep 0.3' } };
  const script: ScriptTurn[] = [...Array.from({ length: N }, () => ({ toolCalls: [count] })), { text: 'counted' }];
  const id = await client.start(scripted(script, { stepsPerRun: 1 }), { sessionId: uniqueId('can') });
  // Messages sent while runs hand over to each other: each must reach the model exactly once.
  const sent: string[] = [];
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 250));
    sent.push(`note ${i}`);
    await client.message(id, `note ${i}`).catch(() => undefined);
  }
  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(sql, id);
  contiguous(events);
  const outputs = eventsOfType(events, 'tool.result').map((e) => e.data.output.trim());
  assert.deepEqual(outputs, Array.from({ length: N }, (_, i) => String(i + 1)), 'every call ran once, in the same workspace');
  assert.equal(eventsOfType(events, 'sandbox.provisioned').length, 1, 'one container for the whole session');
  assert.equal(events.filter((e) => e.type === 'sandbox.restored' || e.type === 'sandbox.resumed').length, 0, 'never restored');
  assert.ok(eventsOfType(events, 'session.continued').length >= N - 1, 'a new run per step');
  const received = eventsOfType(events, 'message.user').map((e) => e.data.text);
  assert.deepEqual([...received].sort(), [...sent].sort(), 'every message recorded exactly once');

  const started = await firstEvent(sql, id, 'session.started');
  const runs = await sessionHistories(client.temporal, id, started?.data.workflowRunId ?? '');
  assert.equal(runs.length, eventsOfType(events, 'session.continued').length + 1);
  // Keys are unique per run: the same activity id in two runs never replays an old result.
  const ids = runs.map((r) => r.history.events?.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'runTool')?.activityTaskScheduledEventAttributes?.activityId);
  assert.ok(new Set(ids.filter(Boolean)).size < ids.filter(Boolean).length, 'activity ids repeat across runs (so keys must not be built from them alone)');
  if (process.env.KEEL_RECORD_HISTORY) {
    await recordHistory(client.temporal, id, 'continued-run1.json', runs[0]?.runId);
    await recordHistory(client.temporal, id, 'continued-run2.json', runs[1]?.runId);
  }
});

test('the model sees a window within its budget, ten times smaller than the transcript; read_output brings back an elided output exactly', { timeout: 300_000 }, async () => {
  const CONTEXT = 12_000;
  const MAX_OUT = 1000;
  const budgetBytes = (CONTEXT - MAX_OUT) * BYTES_PER_TOKEN;
  const STEPS = 100;
  // Each output is ~3.3 KB of numbered lines: 100 of them are ~10x the budget.
  const command = (n: number) => `seq -f 'line %g of output ${n}' 1 150`;
  llm.reset();
  llm.respond((_body, n) => {
    if (n <= STEPS) return { toolCalls: [{ id: `c${n}`, name: 'shell', args: { command: command(n) } }] };
    if (n === STEPS + 1) return { toolCalls: [{ id: 'again', name: 'read_output', args: { callId: 'c1', offset: 100, limit: 3000 } }] };
    return { text: 'done' };
  });
  const id = await client.start(
    { task: 'read a lot', model: { provider: 'openai-compatible', model: 'tiny-context', baseURL: llm.url, contextTokens: CONTEXT, maxOutputTokens: MAX_OUT }, maxSteps: STEPS + 5 },
    { sessionId: uniqueId('context') },
  );
  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);

  const events = await getEvents(sql, id);
  const transcriptBytes = eventsOfType(events, 'tool.result').reduce((n, e) => n + (e.data.outputRef?.bytes ?? e.data.output.length), 0);
  assert.ok(transcriptBytes >= 10 * budgetBytes * 0.9, `the transcript (${transcriptBytes} B) is about ten times the budget (${budgetBytes} B)`);
  assert.equal(llm.bodyBytes.length, STEPS + 2);
  for (const [i, bytes] of llm.bodyBytes.entries()) assert.ok(bytes <= budgetBytes, `request ${i + 1} is ${bytes} bytes, over the budget of ${budgetBytes}`);
  const calls = eventsOfType(events, 'model.call');
  assert.ok(calls.some((c) => (c.data.context?.elided ?? 0) > 0), 'older outputs were elided');
  assert.ok(calls.some((c) => (c.data.context?.dropped ?? 0) > 0), 'the oldest turns were dropped');
  for (const c of calls) assert.match(c.data.context?.requestSha ?? '', /^[0-9a-f]{64}$/, 'every request is recorded by its hash');

  // read_output: the exact characters of the first output, which the model no longer had in full.
  const first = eventsOfType(events, 'tool.result').find((e) => e.data.callId === 'c1');
  const whole = first?.data.outputRef ? (await readBlob(store.blobs, first.data.outputRef.sha)).toString('utf8') : (first?.data.output ?? '');
  const back = eventsOfType(events, 'tool.result').find((e) => e.data.callId === 'again');
  assert.ok(back?.data.ok, back?.data.output);
  const text = back?.data.outputRef ? (await readBlob(store.blobs, back.data.outputRef.sha)).toString('utf8') : (back?.data.output ?? '');
  const expected = whole.slice(100, 3100);
  assert.ok(expected.length > 2000, 'a real part of the output');
  assert.equal(text.slice(0, expected.length), expected, 'read_output returned the stored output exactly');
  assert.match(text.slice(expected.length), /^\n\[characters 100-\d+ of \d+/, 'and says which part it is');
  const lastBody = llm.requests.at(-1)?.body as { messages: Array<{ role: string; content: unknown }> };
  const lastTool = lastBody.messages.filter((m) => m.role === 'tool').at(-1);
  assert.ok(String(lastTool?.content).includes(expected), 'and the model received it');
});

test('a workflow terminated outside Keel shows as ended, with the reason; its container is reaped', { timeout: 120_000 }, async () => {
  const script: ScriptTurn[] = [{ toolCalls: [{ name: 'shell', input: { command: 'sleep 60' } }] }, { text: 'never' }];
  const id = await client.start(scripted(script), { sessionId: uniqueId('terminated') });
  await waitForEvent(sql, id, (e) => e.type === 'tool.call');
  await client.temporal.workflow.getHandle(id).terminate('operator pulled the plug');
  assert.equal((await getSession(sql, id))?.status, 'running', 'the index cannot know by itself');

  const row = await reconcileSession(sql, client.temporal, id);
  assert.equal(row?.status, 'terminated');
  const ended = eventsOfType(await getEvents(sql, id), 'session.ended');
  assert.equal(ended.length, 1);
  assert.equal(ended[0]?.data.source, 'reconciler');
  assert.match(ended[0]?.data.reason ?? '', /operator pulled the plug/);
  assert.equal((await reconcileSession(sql, client.temporal, id))?.status, 'terminated', 'reconciling again changes nothing');
  assert.equal(eventsOfType(await getEvents(sql, id), 'session.ended').length, 1);

  assert.ok((await sessionContainers(docker, id)).length > 0, 'the container outlived the workflow');
  const reaped = await reapOnce({ docker, client: client.temporal, hostId, minAgeSec: 0 });
  assert.ok(reaped.includes(id));
  assert.deepEqual(await sessionContainers(docker, id), []);
});

test('a worker SIGKILLed at a continue-as-new boundary loses and repeats nothing', { timeout: 300_000 }, async () => {
  // This test runs its own worker processes: stop the in-process one so they get the work.
  await workers.shutdown();
  await running;
  const env = { TEMPORAL_ADDRESS: temporal.address, KEEL_HOST_ID: uniqueId('can-kill-host'), KEEL_REAP_INTERVAL_SEC: '0' };
  const spawned: WorkerProcess[] = [];
  try {
    const first = await spawnWorker({ ...env, KEEL_TEST_KILL_AT_NEW_RUN: '1' });
    spawned.push(first);
    const count = { name: 'shell', input: { command: 'echo x >> /workspace/n.txt; wc -l < /workspace/n.txt' } };
    const script: ScriptTurn[] = [{ toolCalls: [count] }, { toolCalls: [count] }, { toolCalls: [count] }, { text: 'done' }];
    const id = await client.start(scripted(script, { stepsPerRun: 2 }), { sessionId: uniqueId('can-kill') });
    await new Promise<void>((resolve) => first.child.once('exit', () => resolve()));
    assert.match(first.output(), /SIGKILL at the first activity of a new workflow run/);
    spawned.push(await spawnWorker(env));
    const result = await client.result(id);
    assert.equal(result.status, 'completed', result.error);
    const events = await getEvents(sql, id);
    contiguous(events);
    assert.deepEqual(eventsOfType(events, 'tool.result').map((e) => e.data.output.trim()), ['1', '2', '3'], 'each command ran exactly once');
    assert.equal(eventsOfType(events, 'session.continued').length, 1);
  } finally {
    for (const w of spawned) await w.kill('SIGKILL');
  }
});
