/**
 * Budgets and tenant caps on real Temporal, Docker and Postgres: each budget
 * stops its session at the first check past it (budget_exhausted, holding no
 * container), adding budget resumes it where it stopped, and a tenant's caps
 * refuse or queue sessions past its maximum and stop model calls at its daily
 * ceiling across two workers. (The store-level race is in store.test.ts.)
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import type { EventRow } from '../../common/events';
import { costOf } from '../../common/prices';
import type { Budgets, ScriptTurn, SessionSpec } from '../../common/types';
import { connect, getEvents, setTenantLimits, tenantUsage } from '../../store';
import { createWorkers } from '../../workers/worker';
import { runCli } from '../helpers/cli';
import { ensureSandboxImage, sessionContainers, testOwnerUrl, uniqueId, workflowBundle } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { recordHistory } from '../helpers/history';
import { startStack, type Stack } from '../helpers/stack';

let stack: Stack;
const docker = new Docker();
const MAX_OUT = 64;

before(async () => {
  await ensureSandboxImage(docker);
  stack = await startStack('budgets-host');
});

after(async () => {
  await stack?.stop();
});

const cli = (...args: string[]) => runCli(args, { ...stack.env, KEEL_DATABASE_OWNER_URL: testOwnerUrl() });
const shell = (command: string): ScriptTurn => ({ toolCalls: [{ name: 'shell', input: { command } }] });

/** Six steps, each appending its number to a log, then a summary of the log. */
function sixSteps(command = (n: number) => `echo ${n} >> /workspace/log`): ScriptTurn[] {
  return [...[1, 2, 3, 4, 5, 6].map((n) => shell(command(n))), shell('cat /workspace/log'), { text: 'done' }];
}

function spec(task: string, budgets: Budgets, extra: Partial<SessionSpec> = {}, script = sixSteps()): SessionSpec {
  return { task, model: { provider: 'scripted', model: 'budgets', script, maxOutputTokens: MAX_OUT }, budgets, ...extra };
}

type ModelCall = Extract<EventRow, { type: 'model.call' }>['data'];
const modelCalls = (events: EventRow[]): ModelCall[] => events.flatMap((e) => (e.type === 'model.call' ? [e.data] : []));
const sum = (calls: ModelCall[], k: 'inputTokens' | 'outputTokens') => calls.reduce((n, c) => n + c.usage[k], 0);

/** Start, wait for the stop, check it holds no container, and return the events up to the stop. */
async function runToStop(id: string, s: SessionSpec): Promise<{ before: EventRow[]; stop: Extract<EventRow, { type: 'budget.exhausted' }> }> {
  await stack.client.start(s, { sessionId: id });
  const stop = (await waitForEvent(stack.sql, id, (e) => e.type === 'budget.exhausted')) as Extract<EventRow, { type: 'budget.exhausted' }>;
  await waitForEvent(stack.sql, id, (e) => e.type === 'session.status' && e.data.status === 'budget_exhausted');
  await waitForEvent(stack.sql, id, (e) => e.type === 'sandbox.suspended' && e.seq > stop.seq);
  for (let i = 0; i < 100 && (await sessionContainers(docker, id)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(await sessionContainers(docker, id), [], 'no container while stopped at a budget');
  const state = await stack.client.status(id);
  assert.equal(state.status, 'budget_exhausted');
  assert.equal(state.exhausted?.budget, stop.data.budget);
  const before = (await getEvents(stack.sql, id)).filter((e) => e.seq < stop.seq);
  return { before, stop };
}

/** Add budget, let it finish, and check every step ran exactly once. */
async function resumeToEnd(id: string, add: Budgets): Promise<void> {
  await stack.client.addBudget(id, add, { by: 'test' });
  const result = await stack.client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(stack.sql, id);
  const log = events.filter((e) => e.type === 'tool.result').at(-1);
  assert.deepEqual(log?.type === 'tool.result' ? log.data.output.trim().split('\n') : [], ['1', '2', '3', '4', '5', '6'], 'resumed where it stopped: each step once');
  const added = events.find((e) => e.type === 'budget.added');
  assert.ok(added?.type === 'budget.added' && added.data.by === 'test');
}

describe('each budget stops the session at the first check past it, and adding budget resumes it', () => {
  test('tool calls: the call past the budget waits', async () => {
    const id = uniqueId('b-calls');
    const { before, stop } = await runToStop(id, spec('calls', { toolCalls: 3 }));
    assert.deepEqual(stop.data, { budget: 'toolCalls', used: 3, limit: 3 });
    assert.equal(before.filter((e) => e.type === 'tool.call').length, 3);
    const idle = await cli('wait', id, '--until-idle');
    assert.equal(idle.code, 7, idle.stdout + idle.stderr);
    const show = await cli('show', id);
    assert.match(show.stdout, /budget_exhausted/);
    assert.match(show.stdout, /tool calls 3 of 3/);
    assert.match(show.stdout, /stopped at the toolCalls budget \(3 of 3\)/);
    // `keel budget` resumes it.
    const add = await cli('budget', id, '--add-tool-calls', '10', '--as', 'ops');
    assert.equal(add.code, 0, add.stderr);
    const result = await stack.client.result(id);
    assert.equal(result.status, 'completed', result.error);
    assert.equal(result.toolCalls, 7);
    assert.equal(result.spent?.toolCalls, 7);
    const after = await cli('show', id);
    assert.match(after.stdout, /tool calls 7 of 13/);
    await recordHistory(stack.client.temporal, id, 'budget-session.json');
  });

  test('input tokens: stops before the model call after the budget is reached', async () => {
    const id = uniqueId('b-input');
    const { before, stop } = await runToStop(id, spec('input', { inputTokens: 1200 }));
    const calls = modelCalls(before);
    assert.equal(stop.data.budget, 'inputTokens');
    assert.ok(sum(calls, 'inputTokens') >= 1200, 'reached');
    assert.ok(sum(calls.slice(0, -1), 'inputTokens') < 1200, 'and the call before was allowed: the first check past it stopped it');
    assert.ok(calls.length >= 2 && calls.length < 8, `stopped mid-session after ${calls.length} calls`);
    await resumeToEnd(id, { inputTokens: 100_000 });
  });

  test('output tokens: each call reserves maxOutputTokens, so the budget is never passed', async () => {
    const id = uniqueId('b-output');
    const { before, stop } = await runToStop(id, spec('output', { outputTokens: 100 }));
    const calls = modelCalls(before);
    assert.equal(stop.data.budget, 'outputTokens');
    assert.equal(stop.data.reserve, MAX_OUT);
    assert.ok(sum(calls, 'outputTokens') + MAX_OUT > 100, 'the next call could pass it');
    assert.ok(sum(calls.slice(0, -1), 'outputTokens') + MAX_OUT <= 100, 'the last call could not');
    assert.ok(sum(calls, 'outputTokens') <= 100, 'never passed');
    await resumeToEnd(id, { outputTokens: 10_000 });
  });

  test('USD at the session price: stops before a call whose reservation would pass it', async () => {
    const price = { inputPerMTok: 1000, outputPerMTok: 2000 };
    const id = uniqueId('b-usd');
    const { before, stop } = await runToStop(id, spec('usd', { usd: 1.2 }, { model: { provider: 'scripted', model: 'budgets', script: sixSteps(), maxOutputTokens: MAX_OUT, price } }));
    const calls = modelCalls(before);
    const cost = (cs: ModelCall[], reserve: number) => costOf({ inputTokens: sum(cs, 'inputTokens'), outputTokens: sum(cs, 'outputTokens') + reserve }, price);
    assert.equal(stop.data.budget, 'usd');
    assert.ok(cost(calls, MAX_OUT) > 1.2, 'the next call could pass it');
    assert.ok(cost(calls.slice(0, -1), MAX_OUT) <= 1.2, 'the last call could not');
    assert.ok(calls.length >= 1 && calls.length < 8);
    await resumeToEnd(id, { usd: 100 });
  });

  test('active time: stops before the next call once spent; waiting does not count', async () => {
    const id = uniqueId('b-time');
    const { before, stop } = await runToStop(id, spec('time', { wallClockSec: 3 }, {}, sixSteps((n) => `sleep 2; echo ${n} >> /workspace/log`)));
    assert.equal(stop.data.budget, 'wallClockSec');
    assert.ok(stop.data.used >= 3);
    const ran = before.filter((e) => e.type === 'tool.result').length;
    assert.ok(ran >= 1 && ran <= 2, `${ran} two-second steps ran within a 3-second budget`);
    // Stopped for 4 s: none of that is active time.
    await new Promise((r) => setTimeout(r, 4000));
    const state = await stack.client.status(id);
    assert.ok((state.spent?.activeSec ?? 99) <= stop.data.used + 1, `active ${state.spent?.activeSec} s while stopped at ${stop.data.used} s`);
    await resumeToEnd(id, { wallClockSec: 120 });
  });

  test('a model with no known price: the USD budget warns instead of pretending to limit it', async () => {
    const id = uniqueId('b-noprice');
    await stack.client.start(spec('no price', { usd: 0.01 }, {}, [shell('echo 1'), { text: 'done' }]), { sessionId: id });
    const result = await stack.client.result(id);
    assert.equal(result.status, 'completed');
    const warning = (await getEvents(stack.sql, id)).find((e) => e.type === 'budget.warning');
    assert.ok(warning?.type === 'budget.warning' && /no price is known for budgets/.test(warning.data.message));
  });

  test('adding to a budget the session does not have is refused with a clear error', async () => {
    const id = uniqueId('b-refuse');
    await runToStop(id, spec('refuse', { toolCalls: 1 }));
    await assert.rejects(stack.client.addBudget(id, { usd: 5 }, { by: 'test' }), /has no usd budget \(it has toolCalls\)/);
    const bad = await cli('budget', id, '--add-tool-calls', '-3');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--add-tool-calls takes a positive whole number/);
    await stack.client.cancel(id, 'test over');
    assert.equal((await stack.client.result(id)).status, 'cancelled');
  });
});

describe('tenant caps', () => {
  test('past its maximum of running sessions a start is refused with a clear error, or queued until a slot frees', async () => {
    const tenant = `t-run-${uniqueId('x')}`;
    const set = await cli('tenant', 'set', tenant, '--max-running', '1');
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /at most 1 live sessions/);

    // The first session stays live, waiting for a message.
    const first = uniqueId('t-first');
    await stack.client.start({ task: 'stay', model: { provider: 'scripted', model: 't', script: [{ text: 'ready' }, { text: 'bye' }] }, keepAlive: true, tenant }, { sessionId: first });
    assert.equal((await stack.client.untilIdle(first)).idle, true);

    // The second is refused: through the CLI, exit code 8 and the reason.
    const script = join(mkdtempSync(join(tmpdir(), 'keel-tenant-')), 'script.json');
    writeFileSync(script, JSON.stringify([shell('echo hi'), { text: 'done' }]));
    const refused = await cli('run', 'refused', '--script', script, '--tenant', tenant, '--no-worker');
    assert.equal(refused.code, 8, refused.stdout + refused.stderr);
    assert.match(refused.stdout, new RegExp(`refused: tenant ${tenant} already runs its maximum of 1 sessions; start it with --queue`));
    assert.doesNotMatch(refused.stdout, /sandbox\.provisioned/, 'no sandbox for a refused session');

    // The third is queued, then runs when the first ends.
    const third = uniqueId('t-queued');
    await stack.client.start({ task: 'queued', model: { provider: 'scripted', model: 't', script: [shell('echo ran'), { text: 'done' }] }, tenant, queue: true }, { sessionId: third });
    await waitForEvent(stack.sql, third, (e) => e.type === 'session.admission' && e.data.outcome === 'queued');
    const queued = await stack.client.status(third);
    assert.equal(queued.waitingFor, 'admission');
    assert.deepEqual(await sessionContainers(docker, third), [], 'a queued session holds no container');
    await stack.client.closeSession(first);
    const result = await stack.client.result(third);
    assert.equal(result.status, 'completed', result.error);
    const events = await getEvents(stack.sql, third);
    assert.ok(events.some((e) => e.type === 'session.admission' && e.data.outcome === 'admitted'));
  });

  test("a daily token ceiling stops every session of the tenant at it, across two workers; raising it lets them go on", async () => {
    const tenant = `t-day-${uniqueId('x')}`;
    const CEILING = 4000;
    const owner = connect(testOwnerUrl());
    await setTenantLimits(owner, { tenant, dailyTokens: CEILING });
    // A second worker beside the stack's, polling the same queues.
    const second = await createWorkers({ ...stack.config, hostId: uniqueId('budgets-host2') }, { workflowBundle: await workflowBundle() });
    const running = second.run();
    try {
      const ids = [1, 2, 3].map((n) => uniqueId(`t-day-${n}`));
      await Promise.all(ids.map((id) => stack.client.start(spec('ceiling', {}, { tenant }), { sessionId: id })));
      for (const id of ids) {
        await waitForEvent(stack.sql, id, (e) => e.type === 'budget.exhausted' || e.type === 'session.ended', 120_000);
      }
      // Settled usage equals what the sessions' model calls used: nothing charged twice, nothing lost.
      const all = await Promise.all(ids.map((id) => getEvents(stack.sql, id)));
      const used = all.reduce((n, events) => n + sum(modelCalls(events), 'inputTokens') + sum(modelCalls(events), 'outputTokens'), 0);
      const pending = all.filter((events) => !events.some((e) => e.type === 'session.ended')).length;
      const usage = await tenantUsage(stack.sql, tenant);
      assert.ok(pending >= 1, 'at least one session was stopped by the ceiling');
      // Each waiting session holds its refused reservation back; the rest is exactly what was used.
      assert.equal(usage.tokens, used, 'tenant usage is the sum of the calls');
      // A reservation counts the last call's input as a guess: the ceiling is passed by at most the growth of one input per session.
      const growth = Math.max(...all.flatMap((events) => modelCalls(events).map((c, i, cs) => (i ? c.usage.inputTokens - cs[i - 1]!.usage.inputTokens : c.usage.inputTokens))));
      assert.ok(used <= CEILING + ids.length * growth, `used ${used} with a ceiling of ${CEILING}`);
      for (const events of all.filter((ev) => !ev.some((e) => e.type === 'session.ended'))) {
        const stop = events.find((e) => e.type === 'budget.exhausted');
        assert.ok(stop?.type === 'budget.exhausted' && stop.data.budget === `tenant ${tenant} daily tokens`);
      }
      await setTenantLimits(owner, { tenant, dailyTokens: 10_000_000 });
      for (const id of ids) assert.equal((await stack.client.result(id)).status, 'completed');
    } finally {
      await second.shutdown();
      await running;
      await owner.end({ timeout: 2 });
    }
  });
});
