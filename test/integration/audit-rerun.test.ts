/**
 * `keel audit rerun` on real Temporal, Docker and Postgres. A scripted session
 * runs in a real sandbox; its tool calls are rerun on a second image that
 * differs in one tool (python3 claims another release), and on the original:
 * exactly the calls that use python3 drift, the one that prints the time is
 * nondeterministic, the rest match. `--model replay` drives the whole session
 * again as a new session; `--from-step` reruns only later steps.
 *
 *   node --import tsx --test test/integration/audit-rerun.test.ts
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { createSandboxActivities } from '../../activities/sandbox';
import { recordedCalls, replaySessionModel, rerunSession, type RerunReport, type RerunSandbox, type RerunStep } from '../../audit';
import type { BlobStore } from '../../blobs';
import { KeelClient } from '../../client';
import type { EventRow } from '../../common/events';
import type { ScriptTurn, SessionSpec } from '../../common/types';
import { defaultImageTag, listManagedContainers, SandboxRuntime } from '../../host';
import { getEvents, type Sql } from '../../store';
import { runCli } from '../helpers/cli';
import { ensureSandboxImage, uniqueId } from '../helpers/env';
import { startStack, type Stack } from '../helpers/stack';

const docker = new Docker();
const BASE = defaultImageTag();
/** The second image: the sandbox image with python3 claiming another release (the executor, PID 1, runs it untouched). */
const CHANGED = `keel-sandbox-rerun-test:${BASE.split(':')[1]}`;
const WRAPPER = [
  '#!/bin/sh',
  '[ "$$" = 1 ] && exec /usr/bin/python3 "$@"',
  'case "$1" in --version|-V) echo "Python 3.99.0"; exit 0 ;; esac',
  'echo "python3: note: this is the 3.99.0 shim" >&2',
  'exec /usr/bin/python3 "$@"',
  '',
].join('\n');

/** Which steps use python3, print the time, or neither: what each rerun must find. */
const PYTHON = 'python';
const CLOCK = 'clock';
const PLAIN = 'plain';
const turns: Array<{ kind: string; calls: ScriptTurn['toolCalls'] }> = [
  { kind: PLAIN, calls: [{ name: 'write_file', input: { path: 'app.py', content: 'print(2 + 2)\n' } }] },
  { kind: PYTHON, calls: [{ name: 'shell', input: { command: 'python3 --version | tee version.txt' } }] },
  { kind: PLAIN, calls: [{ name: 'shell', input: { command: 'echo hello > greeting.txt && cat greeting.txt' } }] },
  { kind: CLOCK, calls: [{ name: 'shell', input: { command: 'date +%s%N' } }] },
  { kind: PYTHON, calls: [{ name: 'shell', input: { command: "python3 app.py && python3 -c 'print(6 * 7)'" } }] },
  { kind: PLAIN, calls: [{ name: 'list_files', input: { path: '.' } }, { name: 'read_file', input: { path: 'greeting.txt' } }] },
  { kind: PLAIN, calls: [{ name: 'shell', input: { command: 'ls -l --time-style=+' } }] },
];
const script: ScriptTurn[] = [...turns.map((t, i) => ({ text: `Step ${i + 1}.`, toolCalls: t.calls })), { text: 'Done.' }];
/** The kind of session step `step` (1-based). */
const kindOf = (step: number): string => turns[step - 1]?.kind ?? PLAIN;

let stack: Stack;
let client: KeelClient;
let sql: Sql;
let blobs: BlobStore;
let runtime: SandboxRuntime;
let sandbox: RerunSandbox;
let sessionId: string;
let events: EventRow[];

function buildChangedImage(): void {
  const dockerfile = [
    `FROM ${BASE}`,
    'USER root',
    `RUN echo ${Buffer.from(WRAPPER).toString('base64')} | base64 -d > /usr/local/bin/python3 && chmod 755 /usr/local/bin/python3`,
    'USER keel',
    '',
  ].join('\n');
  execFileSync('docker', ['build', '-q', '-t', CHANGED, '-'], { input: dockerfile, stdio: ['pipe', 'ignore', 'pipe'] });
}

before(async () => {
  await ensureSandboxImage(docker);
  buildChangedImage();
  const [a, b] = [await docker.getImage(BASE).inspect(), await docker.getImage(CHANGED).inspect()];
  for (const field of ['User', 'WorkingDir', 'Env', 'Cmd'] as const) assert.deepEqual(b.Config[field], a.Config[field], `the second image keeps ${field}`);

  stack = await startStack('rerun-host');
  ({ client, sql, blobs } = stack);
  // The sandbox activities themselves, called outside Temporal, as `keel audit rerun` does.
  runtime = new SandboxRuntime(docker);
  sandbox = createSandboxActivities({ runtime, blobs, config: { hostId: stack.config.hostId } });

  const spec: SessionSpec = { task: 'rerun me', model: { provider: 'scripted', model: 'rerun', script } };
  sessionId = await client.start(spec, { sessionId: uniqueId('rerun') });
  const result = await client.result(sessionId);
  assert.equal(result.status, 'completed', result.error);
  events = await getEvents(sql, sessionId);
});

after(async () => {
  await runtime?.close();
  await stack?.stop();
  await docker.getImage(CHANGED).remove().catch(() => undefined);
});

/** Containers any rerun of the session left behind (there must be none). */
async function leftovers(): Promise<string[]> {
  return (await listManagedContainers(docker)).filter((c) => c.sessionId.startsWith(`${sessionId}.`)).map((c) => c.name);
}

const classes = (r: RerunReport): Array<[number, string, RerunStep['class']]> => r.steps.map((s) => [s.step, s.tool, s.class]);

describe('rerunning tool calls', () => {
  it('on an image whose python3 changed: the python3 steps drift, the clock step is nondeterministic, the rest match', { timeout: 300_000 }, async () => {
    const report = await rerunSession({ sessionId, events, blobs, sandbox, image: CHANGED });
    const sandboxCalls = turns.reduce((n, t) => n + (t.calls?.length ?? 0), 0);
    assert.equal(report.steps.length, sandboxCalls, 'every sandbox call was rerun');
    for (const s of report.steps) {
      const want = { [PYTHON]: 'drift', [CLOCK]: 'nondeterministic', [PLAIN]: 'match' }[kindOf(s.step)];
      assert.equal(s.class, want, `step ${s.step} (${s.args}): ${JSON.stringify(s.differences)}`);
      assert.equal(s.originalImage, BASE);
    }
    assert.equal(report.drifted, true);
    assert.deepEqual(report.counts, { match: sandboxCalls - 3, nondeterministic: 1, drift: 2, skipped: 0 });

    const version = report.steps.find((s) => s.step === 2);
    const output = version?.differences.image?.find((d) => d.field === 'output');
    assert.match(output?.detail.join('\n') ?? '', /line 1:\n- "Python 3\.\d+\.\d+"\n\+ "Python 3\.99\.0"/);
    const files = version?.differences.image?.find((d) => d.field === 'snapshot');
    assert.deepEqual(files?.detail, ['~ /workspace/version.txt'], 'the snapshot names the file that differs');
    assert.deepEqual(version?.differences.original, [], 'the original image reproduces it');
    const app = report.steps.find((s) => s.step === 5);
    assert.deepEqual(app?.differences.image?.map((d) => d.field), ['output'], 'same exit code and files, other output');
    const clock = report.steps.find((s) => s.step === 4);
    assert.deepEqual(clock?.differences.original.map((d) => d.field), ['output']);
    // The contract: same tools and model settings today; the sandbox's image differs.
    assert.equal(report.contract.recorded, true);
    assert.deepEqual(report.contract.differences.map((d) => d.field), ['sandbox.image', 'sandbox.imageId']);
    assert.equal(report.contract.differences[0]?.today, CHANGED);
    assert.deepEqual(await leftovers(), [], 'every container the rerun created is gone');
  });

  it('on the original image: no drift', { timeout: 300_000 }, async () => {
    const report = await rerunSession({ sessionId, events, blobs, sandbox });
    assert.equal(report.drifted, false);
    assert.deepEqual(report.contract, { recorded: true, differences: [] }, 'the runtime contract is the one recorded');
    assert.deepEqual(
      classes(report),
      recordedCalls(events).map((c) => [c.step, c.name, kindOf(c.step) === CLOCK ? 'nondeterministic' : 'match']),
    );
    assert.ok(report.steps.every((s) => s.differences.image === undefined), 'one run per call: the image is the original');
  });

  it('--from-step: only the calls of that step and later are rerun', { timeout: 300_000 }, async () => {
    const report = await rerunSession({ sessionId, events, blobs, sandbox, image: CHANGED, fromStep: 5 });
    const later = recordedCalls(events).filter((c) => c.step >= 5);
    assert.deepEqual(report.steps.map((s) => s.callId), later.map((c) => c.callId));
    assert.deepEqual(report.counts, { match: later.length - 1, nondeterministic: 0, drift: 1, skipped: 0 });
  });

  it('keel audit rerun: a table, --json, and exit code 1 on drift, 0 without', { timeout: 300_000 }, async () => {
    const cliEnv = { DATABASE_URL: process.env.DATABASE_URL, ...stack.env };
    const drifted = await runCli(['audit', 'rerun', sessionId, '--image', CHANGED, '--from-step', '4', '--json'], cliEnv);
    assert.equal(drifted.code, 1, drifted.stderr);
    const report = JSON.parse(drifted.stdout) as RerunReport;
    assert.deepEqual(report.steps.map((s) => [s.step, s.class]), [[4, 'nondeterministic'], [5, 'drift'], [6, 'match'], [6, 'match'], [7, 'match']]);
    const table = await runCli(['audit', 'rerun', sessionId, '--from-step', '2'], cliEnv);
    assert.equal(table.code, 0, table.stderr + table.stdout);
    assert.match(table.stdout, /step 2 +shell +match +python3 --version \| tee version\.txt/);
    assert.match(table.stdout, /step 4 +shell +nondeterministic +date \+%s%N\n +differs on its original image too:\n +output: /);
    assert.match(table.stdout, /\d+ match, 1 nondeterministic, 0 drift, 0 skipped: no drift/);
    assert.match(table.stdout, /normalisation: none/);
    assert.match(table.stdout, /runtime contract: the same as recorded/);
    assert.deepEqual(await leftovers(), []);
  });
});

describe('replaying the model', () => {
  it('drives the session again as a marked new session; on the same runtime nothing differs', { timeout: 300_000 }, async () => {
    const report = await replaySessionModel({ sessionId, events, blobs, sessions: client, readEvents: (id) => getEvents(sql, id), sandbox });
    assert.equal(report.status.replay, 'completed');
    assert.equal(report.status.recorded, 'completed');
    assert.deepEqual(report.modelTurns, { recorded: script.length, replay: script.length });
    assert.equal(report.differs, false, JSON.stringify(report.steps.filter((s) => s.class !== 'match')));
    for (const s of report.steps) assert.equal(s.class, kindOf(s.step) === CLOCK ? 'nondeterministic' : 'match', `step ${s.step}`);
    const started = (await getEvents(sql, report.replayId)).find((e) => e.type === 'session.started');
    assert.ok(started?.type === 'session.started');
    assert.match(started.data.task, new RegExp(`^Rerun of session ${sessionId}\\b`));
    assert.equal(started.data.spec?.rerunOf, sessionId);
    assert.equal(report.image, BASE);
  });

  it('on the changed image: the first python3 step drifts, and what follows from its files is inherited', { timeout: 300_000 }, async () => {
    const report = await replaySessionModel({ sessionId, events, blobs, sessions: client, readEvents: (id) => getEvents(sql, id), sandbox, image: CHANGED });
    assert.equal(report.image, CHANGED);
    assert.equal(report.differs, true);
    assert.equal(report.status.replay, 'completed');
    const byStep = report.steps.map((s) => [s.step, s.class]);
    assert.deepEqual(byStep.filter(([, c]) => c === 'drift'), [[2, 'drift']]);
    // After step 2 its version.txt differs, so every later snapshot does too: nothing later can be told apart.
    for (const s of report.steps.filter((x) => x.step > 2)) assert.ok(['match', 'inherited'].includes(s.class), `step ${s.step}: ${s.class}`);
    assert.ok(report.steps.some((s) => s.step === 5 && s.class === 'inherited'));
    assert.deepEqual(await leftovers(), []);
  });
});
