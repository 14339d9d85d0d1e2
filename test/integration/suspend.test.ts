/**
 * Suspend and resume on the time-skipping test server: a session that sleeps
 * for 3 days holds no container meanwhile and resumes with its workspace intact;
 * a kept-alive session waits for messages over a day the same way.
 * Real Docker and Postgres; Temporal's time-skipping server skips the 3 days.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import Docker from 'dockerode';
import type { Sql } from 'postgres';
import { getEvents } from '../../store';
import { SESSION_QUEUE } from '../../common/constants';
import { approvalSignal, closeSignal, messageSignal, statusQuery } from '../../workflows';
import type { ScriptTurn, SessionResult, SessionSpec } from '../../common/types';
import { registry } from '../../telemetry/metrics';
import { connectDatabase } from '../../workers/services';
import { createWorkers, type KeelWorkers } from '../../workers/worker';
import { ensureSandboxImage, sessionContainers, testConfig, uniqueId, workflowBundle } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { recordHistory } from '../helpers/history';
import { timeSkippingServerPath } from '../helpers/temporal';

const THREE_DAYS = 3 * 24 * 3600;
let env: TestWorkflowEnvironment;
let workers: KeelWorkers;
let running: Promise<void>;
let sql: Sql;
const docker = new Docker();

before(async () => {
  await ensureSandboxImage(docker);
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: timeSkippingServerPath() } },
  });
  const config = testConfig(env.address, { KEEL_HOST_ID: uniqueId('suspend-host'), KEEL_REAP_INTERVAL_SEC: '0' });
  workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  running = workers.run();
  sql = await connectDatabase(config);
});

after(async () => {
  await workers?.shutdown();
  await running;
  await sql?.end({ timeout: 2 });
  await env?.teardown();
});

test('a 3-day sleep holds no container and resumes with the workspace intact', async () => {
  const script: ScriptTurn[] = [
    { toolCalls: [{ name: 'shell', input: { command: 'mkdir -p app && cd app && printf "v1\\n" > state.txt && export PHASE=waiting' } }] },
    { toolCalls: [{ name: 'sleep', input: { seconds: THREE_DAYS, reason: 'nightly CI' } }] },
    { toolCalls: [{ name: 'shell', input: { command: 'echo "$PHASE $(pwd) $(cat state.txt)"' } }] },
    { text: 'done' },
  ];
  const spec: SessionSpec = { task: 'wait for CI', model: { provider: 'scripted', model: 'suspend', script }, sandbox: { idleSuspendSec: 600 } };
  const id = uniqueId('suspend');
  const handle = await env.client.workflow.start('agentSession', { taskQueue: SESSION_QUEUE, workflowId: id, args: [spec] });

  // Time does not skip until we wait for the result: look at the sandbox during the pause.
  await waitForEvent(sql, id, (e) => e.type === 'sandbox.suspended');
  assert.deepEqual(await sessionContainers(docker, id), [], 'no container while suspended');

  const result = (await handle.result()) as SessionResult;
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(sql, id);
  const types = events.map((e) => e.type);
  assert.ok(types.indexOf('sandbox.suspended') < types.indexOf('sandbox.resumed'), 'suspended, then resumed');
  const outputs = events.filter((e) => e.type === 'tool.result').map((e) => String(e.data.output).trim());
  assert.equal(outputs[1], `Slept ${THREE_DAYS} s.`);
  assert.equal(outputs[2], 'waiting /workspace/app v1', 'files, cwd and exports survived');
  const metrics = await registry.metrics();
  assert.match(metrics, /^keel_restore_duration_seconds_count\{outcome="ok"\} [1-9]/m, 'the restore is timed (keel_restore_duration_seconds)');
  assert.match(metrics, /^keel_restore_bytes_total [1-9]/m, 'restored bytes counted');

  const history = await handle.fetchHistory();
  const timer = history.events?.find((e) => e.timerStartedEventAttributes)?.timerStartedEventAttributes;
  assert.equal(Number(timer?.startToFireTimeout?.seconds), THREE_DAYS, 'a durable 3-day timer');
  assert.deepEqual(await sessionContainers(docker, id), []);
  await recordHistory(env.client, id, 'suspend-session.json');
});

test('a kept-alive session answers several messages over a simulated day, holding no container between them', { timeout: 300_000 }, async () => {
  const script: ScriptTurn[] = [
    { toolCalls: [{ name: 'shell', input: { command: 'echo 0 > /workspace/count && cat /workspace/count' } }] },
    { text: 'Ready for messages.' },
    // One turn pair per message: count it in the workspace, then answer.
    ...[1, 2, 3].flatMap((n): ScriptTurn[] => [
      { toolCalls: [{ name: 'shell', input: { command: `echo ${n} > /workspace/count && cat /workspace/count` } }] },
      { text: `Counted message ${n}.` },
    ]),
  ];
  const spec: SessionSpec = {
    task: 'count the messages',
    model: { provider: 'scripted', model: 'keep-alive', script },
    keepAlive: true,
    idleTimeoutSec: 7 * 24 * 3600,
    sandbox: { idleSuspendSec: 600 },
  };
  const id = uniqueId('keepalive');
  const handle = await env.client.workflow.start('agentSession', { taskQueue: SESSION_QUEUE, workflowId: id, args: [spec] });
  const statuses = async () => (await getEvents(sql, id)).filter((e) => e.type === 'session.status').map((e) => (e.type === 'session.status' ? e.data.status : ''));
  const waitingCount = async () => (await statuses()).filter((s) => s === 'waiting').length;

  for (let n = 1; n <= 3; n++) {
    await waitForEvent(sql, id, () => true); // the session is recording
    for (let i = 0; i < 300 && (await waitingCount()) < n; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await waitingCount(), n, `waiting for message ${n}`);
    assert.equal((await handle.query(statusQuery)).status, 'waiting');
    // Eight hours pass: the container is released.
    await env.sleep('8h');
    await waitForEvent(sql, id, (e) => e.type === 'sandbox.suspended' && (e.data.reason ?? '').includes('waiting for a message') && e.seq > 0);
    for (let i = 0; i < 100 && (await sessionContainers(docker, id)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await sessionContainers(docker, id), [], `no container while waiting for message ${n}`);
    await handle.signal(messageSignal, `message ${n}`);
  }
  for (let i = 0; i < 300 && (await waitingCount()) < 4; i++) await new Promise((r) => setTimeout(r, 100));
  await handle.signal(closeSignal);
  const result = (await handle.result()) as SessionResult;
  assert.equal(result.status, 'completed', result.error);
  assert.equal(result.summary, 'Counted message 3.');

  const events = await getEvents(sql, id);
  const outputs = events.filter((e) => e.type === 'tool.result').map((e) => (e.type === 'tool.result' ? e.data.output.trim() : ''));
  assert.deepEqual(outputs, ['0', '1', '2', '3'], 'each message was answered in the same workspace');
  assert.equal(events.filter((e) => e.type === 'sandbox.suspended').length, 3, 'released during each wait');
  assert.equal(events.filter((e) => e.type === 'sandbox.resumed').length, 3, 'and restored for each message');
  const ended = events.find((e) => e.type === 'session.ended');
  assert.equal(ended?.type === 'session.ended' ? ended.data.reason : '', 'closed');
  assert.deepEqual(await sessionContainers(docker, id), []);
});

test('a call waiting 3 days for approval holds no container; the answer (by signal) runs it in the same workspace', { timeout: 300_000 }, async () => {
  const script: ScriptTurn[] = [
    { toolCalls: [{ name: 'shell', input: { command: 'echo draft > /workspace/release.txt' } }] },
    { toolCalls: [{ name: 'shell', input: { command: 'git push origin release 2>/dev/null; echo "shipped $(cat /workspace/release.txt)"' } }] },
    { text: 'done' },
  ];
  const spec: SessionSpec = {
    task: 'ship it after sign-off',
    model: { provider: 'scripted', model: 'approval-wait', script },
    sandbox: { idleSuspendSec: 600 },
    policy: { rules: [{ tool: 'shell', command: 'git push', action: 'ask', reason: 'releases need sign-off' }], timeoutSec: 7 * 24 * 3600 },
    // Waiting does not spend the active-time budget: 3 days of waiting against a 10-minute budget.
    budgets: { wallClockSec: 600 },
  };
  const id = uniqueId('approval-wait');
  const handle = await env.client.workflow.start('agentSession', { taskQueue: SESSION_QUEUE, workflowId: id, args: [spec] });
  await waitForEvent(sql, id, (e) => e.type === 'approval.requested');
  await env.sleep('3d');
  await waitForEvent(sql, id, (e) => e.type === 'sandbox.suspended' && (e.data.reason ?? '').includes('waiting for approval'));
  for (let i = 0; i < 100 && (await sessionContainers(docker, id)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await sessionContainers(docker, id), [], 'no container while the call waits');
  const state = await handle.query(statusQuery);
  assert.equal(state.waitingFor, 'approval');
  assert.ok((state.spent?.activeSec ?? Infinity) < 600, `active time ${state.spent?.activeSec} s does not count the wait`);

  await handle.signal(approvalSignal, { callId: 'call_1_0', decision: 'approve', by: 'release-manager' });
  const result = (await handle.result()) as SessionResult;
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(sql, id);
  const decided = events.find((e) => e.type === 'approval.decided');
  assert.ok(decided?.type === 'approval.decided' && decided.data.decision === 'approve' && decided.data.waitedSec >= 3 * 24 * 3600, 'answered after 3 days');
  const last = events.filter((e) => e.type === 'tool.result').at(-1);
  assert.equal(last?.type === 'tool.result' ? last.data.output.trim() : '', 'shipped draft');
  assert.ok(events.some((e) => e.type === 'sandbox.resumed'), 'restored to run the call');
  assert.ok((result.spent?.activeSec ?? Infinity) < 600);
  assert.deepEqual(await sessionContainers(docker, id), []);
});
