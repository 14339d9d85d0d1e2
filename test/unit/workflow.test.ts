/**
 * Workflow logic with fake activities on a real (local) Temporal server.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { SANDBOX_QUEUE, SESSION_QUEUE } from '../../common/constants';
import { eventsOfType } from '../../common/events';
import type { SessionResult, SessionSpec, SessionState } from '../../common/types';
import { cancelSignal, messageSignal, statusQuery } from '../../workflows';
import { workflowBundle, uniqueId } from '../helpers/env';
import { createFakes, FAKE_HOST_QUEUE, type Fakes } from '../helpers/fakes';
import { DEV_SERVER_TUNING, resolveTemporalCli } from '../../workers/dev-server';
import { loadConfig } from '../../workers/config';

let env: TestWorkflowEnvironment;

before(async () => {
  env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: resolveTemporalCli(loadConfig()) }, extraArgs: DEV_SERVER_TUNING },
  });
});
after(async () => {
  await env?.teardown();
});

const spec = (extra: Partial<SessionSpec> = {}): SessionSpec => ({
  task: 'do the thing',
  model: { provider: 'scripted', model: 'test', script: [{}] },
  ...extra,
});

async function withWorkers<T>(fakes: Fakes, fn: () => Promise<T>): Promise<T> {
  const { code } = await workflowBundle();
  const session = await Worker.create({
    connection: env.nativeConnection,
    taskQueue: SESSION_QUEUE,
    workflowBundle: { code },
    activities: fakes.activities.session,
  });
  const sandbox = await Worker.create({ connection: env.nativeConnection, taskQueue: SANDBOX_QUEUE, activities: fakes.activities.sandbox });
  const host = await Worker.create({ connection: env.nativeConnection, taskQueue: FAKE_HOST_QUEUE, activities: fakes.activities.sandbox });
  return session.runUntil(sandbox.runUntil(host.runUntil(fn)));
}

function start(s: SessionSpec, id = uniqueId('wf')) {
  return env.client.workflow.start('agentSession', { taskQueue: SESSION_QUEUE, workflowId: id, args: [s] });
}

function assertContiguous(fakes: Fakes) {
  const seqs = fakes.events.map((e) => e.seq).sort((a, b) => a - b);
  assert.deepEqual(seqs, seqs.map((_, i) => i + 1), 'event seqs are 1..n without gaps or duplicates');
}

test('tool calls run in order and the session completes with the final text', async () => {
  const fakes = createFakes([
    { toolCalls: [{ id: 'c1', name: 'shell', input: { command: 'ls' } }, { id: 'c2', name: 'read_file', input: { path: 'a' } }] },
    { text: 'all done' },
  ]);
  const result: SessionResult = await withWorkers(fakes, async () => (await start(spec())).result());
  assert.equal(result.status, 'completed');
  assert.equal(result.summary, 'all done');
  assert.equal(result.steps, 2);
  assert.equal(result.toolCalls, 2);
  assert.deepEqual(fakes.toolRuns.map((c) => c.name), ['shell', 'read_file']);
  assert.deepEqual(result.usage, { inputTokens: 20, outputTokens: 10 });
  assert.equal(fakes.destroyed.length, 1, 'sandbox removed at the end');
  assertContiguous(fakes);
  const types = fakes.events.map((e) => e.type);
  assert.equal(types[0], 'session.started');
  assert.equal(types.at(-1), 'session.ended');
  assert.equal(types.filter((t) => t === 'tool.call').length, 2);
  assert.equal(types.filter((t) => t === 'tool.result').length, 2);
  // The second model call saw the tool results.
  const second = fakes.modelInputs[1]!;
  assert.equal(second.at(-1)?.role, 'tool');
});

test('invalid arguments and unknown tools go back to the model as errors; the session goes on', async () => {
  const fakes = createFakes([
    {
      toolCalls: [
        { id: 'bad', name: 'write_file', input: { path: 'x' } },
        { id: 'unk', name: 'launch_missiles', input: {} },
        { id: 'ok', name: 'shell', input: { command: 'true' } },
      ],
    },
    { text: 'recovered' },
  ]);
  const result = await withWorkers(fakes, async () => (await start(spec())).result());
  assert.equal(result.status, 'completed');
  assert.deepEqual(fakes.toolRuns.map((c) => c.id), ['ok'], 'only the valid call reached the sandbox');
  const toolMsg = fakes.modelInputs[1]!.at(-1);
  assert.ok(toolMsg && toolMsg.role === 'tool');
  const byId = Object.fromEntries(toolMsg.results.map((r) => [r.callId, r]));
  assert.equal(byId.bad?.error, 'InvalidArguments');
  assert.match(byId.bad?.output ?? '', /content/);
  assert.equal(byId.unk?.error, 'UnknownTool');
  assert.equal(byId.ok?.ok, true);
});

test('the step limit stops a model that never finishes', async () => {
  const loop = { toolCalls: [{ id: 'x', name: 'shell', input: { command: 'true' } }] };
  const fakes = createFakes([loop, loop, loop, loop]);
  const result = await withWorkers(fakes, async () => (await start(spec({ maxSteps: 3 }))).result());
  assert.equal(result.status, 'step_limit');
  assert.equal(result.steps, 3);
  assert.equal(fakes.destroyed.length, 1);
});

test('cancel stops a running tool call, removes the sandbox and records why', async () => {
  const fakes = createFakes([{ toolCalls: [{ id: 'slow', name: 'shell', input: { command: 'sleep 100' } }] }], { toolDelayMs: 3000 });
  const result = await withWorkers(fakes, async () => {
    const handle = await start(spec());
    while ((await handle.query(statusQuery)).toolCalls === 0) await new Promise((r) => setTimeout(r, 50));
    await handle.signal(cancelSignal, 'operator said stop');
    return handle.result();
  });
  assert.equal(result.status, 'cancelled');
  assert.equal(fakes.destroyed.length, 1);
  const ended = fakes.events.find((e) => e.type === 'session.ended');
  assert.equal(ended?.data.reason, 'operator said stop');
  assertContiguous(fakes);
});

test('a message signal reaches the model on its next turn and the status query answers', async () => {
  const fakes = createFakes(
    [{ toolCalls: [{ id: 'a', name: 'shell', input: { command: 'sleep 1' } }] }, { text: 'noted' }],
    { toolDelayMs: 1500 },
  );
  let state: SessionState | undefined;
  await withWorkers(fakes, async () => {
    const handle = await start(spec());
    while ((await handle.query(statusQuery)).toolCalls === 0) await new Promise((r) => setTimeout(r, 50));
    await handle.signal(messageSignal, 'also add a README');
    state = await handle.query(statusQuery);
    return handle.result();
  });
  assert.equal(state?.status, 'running');
  assert.equal(state?.lastTool, 'shell');
  const second = fakes.modelInputs[1]!;
  assert.deepEqual(second.at(-1), { role: 'user', text: 'also add a README' });
  assert.ok(fakes.events.some((e) => e.type === 'message.user' && e.data.text === 'also add a README'));
});

test('a model failure ends the session as failed, with the sandbox removed and the error recorded', async () => {
  const fakes = createFakes([]);
  fakes.activities.session.callModel = async () => {
    const { ApplicationFailure } = await import('@temporalio/common');
    throw ApplicationFailure.nonRetryable('no key configured', 'Model.NotConfigured');
  };
  const result = await withWorkers(fakes, async () => (await start(spec())).result());
  assert.equal(result.status, 'failed');
  assert.match(result.error ?? '', /no key configured/);
  assert.equal(fakes.destroyed.length, 1);
  assert.ok(fakes.events.some((e) => e.type === 'session.error' && e.data.type === 'Model.NotConfigured'));
});

test('starting a session id twice is refused', async () => {
  const fakes = createFakes([{ text: 'done' }]);
  await withWorkers(fakes, async () => {
    const id = uniqueId('dup');
    await (await start(spec(), id)).result();
    await assert.rejects(
      env.client.workflow.start('agentSession', { taskQueue: SESSION_QUEUE, workflowId: id, args: [spec()], workflowIdReusePolicy: 'REJECT_DUPLICATE' }),
      /already started|AlreadyStarted/i,
    );
  });
});

test('a lost container is restored from the last snapshot and the call runs again there', async () => {
  const fakes = createFakes(
    [
      { toolCalls: [{ id: 'w', name: 'write_file', input: { path: 'a', content: 'x' } }] },
      { toolCalls: [{ id: 's', name: 'shell', input: { command: 'make' } }] },
      { text: 'done' },
    ],
    {},
  );
  // Lose the container on the second call (the shell), after the write was snapshotted.
  const run = fakes.activities.sandbox.runTool;
  let calls = 0;
  fakes.activities.sandbox.runTool = async (input) => {
    if (++calls === 2) {
      const { ApplicationFailure } = await import('@temporalio/common');
      throw ApplicationFailure.nonRetryable('container was killed', 'Sandbox.ContainerGone');
    }
    return run(input);
  };
  const result = await withWorkers(fakes, async () => (await start(spec())).result());
  assert.equal(result.status, 'completed', result.error);
  assert.deepEqual(fakes.provisions, [{ generation: 1, restoreFrom: undefined }, { generation: 2, restoreFrom: 'snap-1' }]);
  const restored = fakes.events.find((e) => e.type === 'sandbox.restored');
  assert.equal(restored?.data.snapshot, 'snap-1');
  assert.match(String(restored?.data.reason), /container lost/);
  const results = fakes.events.filter((e) => e.type === 'tool.result');
  assert.equal(results.length, 2, 'the model sees one result per call; the loss is not a step');
  assert.equal(results[1]?.data.ok, true);
  assertContiguous(fakes);
});

test('a host that stops answering makes the session move to another host', async () => {
  const fakes = createFakes([{ toolCalls: [{ id: 'a', name: 'shell', input: { command: 'true' } }] }, { text: 'done' }], {
    deadFirstHost: true,
  });
  const result = await withWorkers(fakes, async () => (await start(spec({ sandbox: { hostTimeoutSec: 2 } }))).result());
  assert.equal(result.status, 'completed', result.error);
  assert.equal(fakes.provisions.length, 2);
  const restored = fakes.events.find((e) => e.type === 'sandbox.restored');
  assert.match(String(restored?.data.reason), /host stopped answering/);
  assert.equal(restored?.data.hostId, 'fake');
});

test('a long sleep releases the container and the next call resumes from the snapshot', async () => {
  const fakes = createFakes([
    { toolCalls: [{ id: 'w', name: 'write_file', input: { path: 'a', content: 'x' } }] },
    { toolCalls: [{ id: 'z', name: 'sleep', input: { seconds: 2, reason: 'CI' } }] },
    { toolCalls: [{ id: 'r', name: 'read_file', input: { path: 'a' } }] },
    { text: 'done' },
  ]);
  const result = await withWorkers(fakes, async () => (await start(spec({ sandbox: { idleSuspendSec: 1 } }))).result());
  assert.equal(result.status, 'completed', result.error);
  const types = fakes.events.map((e) => e.type);
  assert.ok(types.indexOf('sandbox.suspended') < types.indexOf('sandbox.resumed'));
  assert.equal(fakes.destroyed.length, 2, 'released at the sleep, removed at the end');
  assert.deepEqual(fakes.provisions.at(-1), { generation: 2, restoreFrom: 'snap-1' });
  const slept = eventsOfType(fakes.events, 'tool.result').find((e) => e.data.name === 'sleep');
  assert.equal(slept?.data.output, 'Slept 2 s.');
});

test('a message wakes a sleeping session early', async () => {
  const fakes = createFakes([{ toolCalls: [{ id: 'z', name: 'sleep', input: { seconds: 3600 } }] }, { text: 'done' }]);
  const result = await withWorkers(fakes, async () => {
    const handle = await start(spec());
    while ((await handle.query(statusQuery)).toolCalls === 0) await new Promise((r) => setTimeout(r, 50));
    await handle.signal(messageSignal, 'CI is green');
    return handle.result();
  });
  assert.equal(result.status, 'completed');
  const slept = eventsOfType(fakes.events, 'tool.result').find((e) => e.data.name === 'sleep');
  assert.match(String(slept?.data.output), /Woke early/);
});
