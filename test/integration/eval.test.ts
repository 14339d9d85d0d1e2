/**
 * `keel eval` on the real stack (Temporal dev server, Docker, Postgres): the example suite gives
 * its expected pass counts through the CLI, its two tasks with one setup fork one snapshot, and a
 * worker SIGKILLed mid-eval costs no rollout twice.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { after, before, test } from 'node:test';
import type { Sql } from 'postgres';
import { KeelClient } from '../../client';
import { evalInput, loadSuite, runEval } from '../../cli/eval';
import type { EvalReport } from '../../common/eval';
import { faultFor } from '../../common/inject';
import type { FaultInjection } from '../../common/types';
import { getEvents } from '../../store';
import { connectDatabase } from '../../workers/services';
import { runCli } from '../helpers/cli';
import { recordHistory } from '../helpers/history';
import { ensureSandboxImage, testConfig, uniqueId } from '../helpers/env';
import { spawnWorker, type WorkerProcess } from '../helpers/processes';
import { TestTemporal } from '../helpers/temporal';

const SUITE = join(__dirname, '../../examples/eval/suite.jsonl');
/** Passes per rollout of each example task, in suite order. */
const EXPECTED: Record<string, boolean> = { 'fix-median': true, 'fix-median-wrong': false, 'write-hello': true, 'count-lines': true, 'gives-up': false };

let temporal: TestTemporal;
let client: KeelClient;
let sql: Sql;
let env: Record<string, string>;
const workers: WorkerProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'keel-eval-'));

before(async () => {
  await ensureSandboxImage(new Docker());
  temporal = await TestTemporal.start();
  env = { TEMPORAL_ADDRESS: temporal.address, KEEL_HOST_ID: uniqueId('eval-host'), KEEL_REAP_INTERVAL_SEC: '0', KEEL_GC_INTERVAL_SEC: '0' };
  const config = testConfig(temporal.address, env);
  client = await KeelClient.connect({ address: config.temporalAddress });
  sql = await connectDatabase(config);
});

after(async () => {
  for (const w of workers) await w.kill('SIGTERM');
  await client?.close();
  await sql?.end({ timeout: 2 });
  await temporal?.down();
});

/** How often each child workflow id was started by the eval (from its history). */
async function childStarts(evalId: string): Promise<Map<string, number>> {
  const history = await client.temporal.workflow.getHandle(evalId).fetchHistory();
  const starts = new Map<string, number>();
  for (const e of history.events ?? []) {
    const id = e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId;
    if (id) starts.set(id, (starts.get(id) ?? 0) + 1);
  }
  return starts;
}

function assertExpected(r: EvalReport, rollouts: number): void {
  assert.equal(r.records.length, 5 * rollouts);
  assert.equal(new Set(r.records.map((x) => x.sessionId)).size, r.records.length, 'each rollout once');
  for (const t of r.tasks) {
    assert.equal(t.pass.total, rollouts, t.taskId);
    assert.equal(t.pass.passed, EXPECTED[t.taskId] ? rollouts : 0, `${t.taskId}: ${JSON.stringify(r.records.filter((x) => x.taskId === t.taskId))}`);
  }
  assert.equal(r.overall.pass.passed, 3 * rollouts);
  for (const x of r.records) {
    assert.equal(x.status, 'completed', `${x.sessionId}: ${x.error}`);
    assert.equal(x.check?.exitCode, EXPECTED[x.taskId] ? 0 : 1, `${x.sessionId}: the check ran (${x.error})`);
  }
}

test('the example suite, through the CLI: expected pass counts, one setup snapshot forked by the tasks sharing it', async () => {
  const id = uniqueId('eval-cli');
  const out = join(dir, 'a.json');
  const run = await runCli(['eval', SUITE, '--model', 'scripted', '--rollouts', '2', '--concurrency', '3', '--id', id, '--out', out], env);
  assert.equal(run.code, 0, run.stderr + run.stdout);
  assert.match(run.stdout, /overall\s+6\/10 60% \[31%, 83%\]/);
  assert.match(run.stdout, /runtime contract: scripted:eval, keel /);
  const told = [...run.stdout.matchAll(/… (\d+) of 10 rollouts done, (\d+) running/g)].map((m) => Number(m[1]));
  assert.ok(told.length > 0, `progress while it ran:\n${run.stdout}`);
  assert.ok(told.every((n, i) => i === 0 || n >= told[i - 1]!), 'the count never goes back');
  const r = JSON.parse(readFileSync(out, 'utf8')) as EvalReport;
  assertExpected(r, 2);
  assert.equal(r.contracts.length, 1, 'one runtime, named once');
  assert.ok(r.contracts[0]?.sandbox?.imageId);
  assert.ok(r.records.every((x) => x.contract === 0), 'every rollout names the runtime contract it ran on');
  for (const x of r.records.filter((x) => x.taskId === 'gives-up')) assert.equal(x.check?.exitCode, 1);

  // Two distinct setups ran, once each, for four tasks' worth of rollouts that need them.
  const starts = await childStarts(id);
  assert.deepEqual([...starts.keys()].filter((k) => k.includes('.setup-')).sort(), [`${id}.setup-1`, `${id}.setup-2`]);
  // The stats tasks' four rollouts all start from the one snapshot of their shared setup.
  const forks = new Set<string>();
  for (const x of r.records.filter((x) => x.taskId.startsWith('fix-median'))) {
    const started = (await getEvents(sql, x.sessionId)).find((e) => e.type === 'session.started');
    const snapshot = started?.type === 'session.started' ? started.data.spec?.fork?.snapshot : undefined;
    assert.ok(snapshot, x.sessionId);
    forks.add(snapshot);
  }
  assert.equal(forks.size, 1);
  // With KEEL_RECORD_HISTORY=1: the histories test/unit/replay.test.ts replays.
  await recordHistory(client.temporal, id, 'eval-suite.json');
  await recordHistory(client.temporal, `${id}.setup-1`, 'eval-sandbox.json');

  // The same id again: the finished eval is followed, not run again (no worker needed).
  const again = await runCli(['eval', SUITE, '--model', 'scripted', '--rollouts', '2', '--id', id, '--no-worker', '--json'], env);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /was already started: following it/);
  assert.deepEqual((JSON.parse(again.stdout) as EvalReport).records, r.records);
  assert.equal((await childStarts(id)).size, starts.size, 'no child started again');

  const same = await runCli(['eval', 'compare', out, out]);
  assert.equal(same.code, 0, same.stderr);
  assert.match(same.stdout, /runtime contract: same/);
  assert.match(same.stdout, /overall\s+6\/10 .*6\/10 .*\+0 pts/);
});

test('--inject: each rollout gets its own seed, and exactly the rollouts whose command was faulted fail', async () => {
  const suite = join(dir, 'count.jsonl');
  writeFileSync(suite, readFileSync(SUITE, 'utf8').split('\n').filter((l) => l.includes('"count-lines"')).join('\n'));
  const inject: FaultInjection = { seed: 11, rules: [{ tool: 'shell', rate: 0.5, fault: 'nonzero' }] };
  const injectFile = join(dir, 'inject.json');
  writeFileSync(injectFile, JSON.stringify(inject));
  const out = join(dir, 'inject-result.json');
  const rollouts = 8;
  const run = await runCli(['eval', suite, '--model', 'scripted', '--rollouts', String(rollouts), '--concurrency', '4', '--inject', injectFile, '--out', out], env);
  assert.equal(run.code, 0, run.stderr + run.stdout);
  const r = JSON.parse(readFileSync(out, 'utf8')) as EvalReport;
  // The script's one shell call is the session's first tool call; it is faulted when the rollout's seed says so.
  const expected = Array.from({ length: rollouts }, (_, k) => faultFor({ ...inject, seed: inject.seed + k }, 'shell', 1) === undefined);
  assert.ok(expected.includes(true) && expected.includes(false), 'the seeds chosen give both outcomes');
  assert.deepEqual([...r.records].sort((a, b) => a.rollout - b.rollout).map((x) => x.passed), expected);
});

test('a setup that fails: its rollouts are setup_failed with the reason, and no session is started for them', async () => {
  const suite = join(dir, 'setup-fails.jsonl');
  const script = [{ text: 'nothing to do' }];
  writeFileSync(suite, [
    JSON.stringify({ id: 'broken', prompt: 'p', setup: { files: { 'a.txt': 'a' }, commands: ['echo going wrong; exit 3'] }, check: 'true', script }),
    JSON.stringify({ id: 'fine', prompt: 'p', check: 'true', script }),
  ].join('\n'));
  const id = uniqueId('eval-setup');
  const out = join(dir, 'setup-fails.json');
  const run = await runCli(['eval', suite, '--model', 'scripted', '--rollouts', '2', '--id', id, '--out', out], env);
  assert.equal(run.code, 0, run.stderr + run.stdout);
  const r = JSON.parse(readFileSync(out, 'utf8')) as EvalReport;
  const broken = r.records.filter((x) => x.taskId === 'broken');
  assert.deepEqual(broken.map((x) => [x.status, x.passed]), [['setup_failed', false], ['setup_failed', false]]);
  assert.match(broken[0]?.error ?? '', /setup step 2 \(shell\) failed with exit 3: going wrong/);
  assert.deepEqual(r.records.filter((x) => x.taskId === 'fine').map((x) => x.passed), [true, true]);
  const started = [...(await childStarts(id)).keys()];
  assert.ok(!started.some((k) => k.startsWith(`${id}.broken.`)), started.join(' '));
  assert.match(run.stdout, /failed: .*broken\.1 \(setup_failed: setup step 2/);
});

test('a bad suite line is refused before anything starts, naming the line and field', async () => {
  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, '{"id":"a","prompt":"p","check":"true","script":[{"text":"x"}]}\n{"id":"b","prompt":"p"}\n');
  const run = await runCli(['eval', bad, '--model', 'scripted', '--no-worker'], env);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /suite .*bad\.jsonl, line 2, field "check": is required/);
});

test('a worker SIGKILLed mid-eval: the eval finishes on another worker with every rollout counted once', async () => {
  const first = await spawnWorker(env);
  workers.push(first);
  const id = uniqueId('eval-crash');
  const input = evalInput(loadSuite(SUITE), { suite: SUITE, model: 'scripted', rollouts: 2, concurrency: 2 });
  const done = runEval(client, input, id);
  done.catch(() => undefined);

  // Kill it once some rollouts have ended and others have not.
  const ended = async () => (await sql<{ n: number }[]>`select count(*)::int as n from events where session_id like ${`${id}.%`} and type = 'session.ended'`)[0]?.n ?? 0;
  const deadline = Date.now() + 180_000;
  while ((await ended()) < 3) {
    assert.ok(Date.now() < deadline, `no rollout ended in time:\n${first.output()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const endedBeforeKill = await ended();
  await first.kill('SIGKILL');
  assert.ok(endedBeforeKill < 10, 'the kill came mid-eval');

  const second = await spawnWorker(env);
  workers.push(second);
  const r = await done;
  assertExpected(r, 2);

  // Each child (setups, rollout sessions, checks) was started once, and each session ran once.
  const starts = await childStarts(id);
  assert.ok([...starts.values()].every((n) => n === 1), JSON.stringify([...starts]));
  assert.equal([...starts.keys()].filter((k) => k.endsWith('.check')).length, 10);
  for (const x of r.records) {
    const events = await getEvents(sql, x.sessionId);
    assert.equal(events.filter((e) => e.type === 'session.started').length, 1, x.sessionId);
    assert.equal(events.filter((e) => e.type === 'session.ended').length, 1, x.sessionId);
    assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1), `${x.sessionId}: no gaps or duplicates`);
  }
});
