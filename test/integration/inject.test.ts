/**
 * Deliberate tool faults on real Temporal, Docker and Postgres: the same seed
 * hits the same calls on two runs, an injected fault never reaches the sandbox
 * (the workspace shows only the calls that really ran), results are marked
 * injected in the log and in `keel show`, and the audit still verifies.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import type { EventRow } from '../../common/events';
import { faultFor } from '../../common/inject';
import type { FaultInjection, ScriptTurn, SessionSpec } from '../../common/types';
import { getEvents } from '../../store';
import { runCli } from '../helpers/cli';
import { ensureSandboxImage, uniqueId } from '../helpers/env';
import { startStack, type Stack } from '../helpers/stack';

let stack: Stack;

before(async () => {
  await ensureSandboxImage(new Docker());
  stack = await startStack('inject-host');
});

after(async () => {
  await stack?.stop();
});

const CALLS = 20;
const script: ScriptTurn[] = [
  ...Array.from({ length: CALLS }, (_, i): ScriptTurn => ({ toolCalls: [{ name: 'shell', input: { command: `echo ${i + 1} >> /workspace/log` } }] })),
  // Read back with a tool the injection leaves alone.
  { toolCalls: [{ name: 'read_file', input: { path: 'log' } }] },
  { text: 'done' },
];

function spec(inject: FaultInjection): SessionSpec {
  return { task: 'append twenty lines', model: { provider: 'scripted', model: 'inject', script }, inject };
}

async function run(inject: FaultInjection): Promise<{ id: string; events: EventRow[]; hit: number[] }> {
  const id = uniqueId('inject');
  await stack.client.start(spec(inject), { sessionId: id });
  const result = await stack.client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(stack.sql, id);
  const results = events.flatMap((e) => (e.type === 'tool.result' ? [e.data] : []));
  // The ordinal of a shell call is its step here: one call per turn.
  const hit = results.flatMap((r, i) => (r.injected ? [i + 1] : []));
  return { id, events, hit };
}

test('the same seed injects the same faults on two runs; injected faults never touch the workspace', async () => {
  const inject: FaultInjection = { seed: 7, rules: [{ tool: 'shell', rate: 0.3, fault: 'nonzero' }] };
  const a = await run(inject);
  const b = await run(inject);
  assert.deepEqual(a.hit, b.hit, 'same calls hit');
  assert.ok(a.hit.length > 0 && a.hit.length < CALLS, `${a.hit.length} of ${CALLS} hit`);
  // The hits are the documented function of seed, tool and call number: a re-run can predict them.
  const predicted = Array.from({ length: CALLS }, (_, i) => i + 1).filter((n) => faultFor(inject, 'shell', n));
  assert.deepEqual(a.hit, predicted);

  for (const { events, hit } of [a, b]) {
    const results = events.flatMap((e) => (e.type === 'tool.result' ? [e.data] : []));
    for (const n of hit) {
      const r = results[n - 1]!;
      assert.equal(r.ok, false);
      assert.equal(r.exitCode, 1);
      assert.equal(r.injected, 'nonzero');
      assert.match(r.output, /injected fault/);
    }
    // Only the calls that really ran appended their line.
    const expected = Array.from({ length: CALLS }, (_, i) => i + 1).filter((n) => !hit.includes(n));
    const log = results.at(-1)!.output.trim().split('\n').map((line) => Number(line.replace(/^\s*\d+\t/, '')));
    assert.deepEqual(log, expected);
  }

  const show = await runCli(['show', a.id], stack.env);
  assert.equal(show.code, 0, show.stderr);
  assert.equal(show.stdout.match(/\[INJECTED nonzero fault\]/g)?.length, a.hit.length);
  assert.match(show.stdout, new RegExp(`${a.hit.length} tool results were deliberate faults`));
  const verify = await runCli(['audit', 'verify', a.id], stack.env);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);

  // Another seed, another set of hits (checked against the prediction, not a hope).
  const other: FaultInjection = { seed: 8, rules: [{ tool: 'shell', rate: 0.3, fault: 'nonzero' }] };
  const otherHits = Array.from({ length: CALLS }, (_, i) => i + 1).filter((n) => faultFor(other, 'shell', n));
  assert.notDeepEqual(otherHits, predicted);
});

test('each kind of fault looks like its real counterpart and is marked injected', async () => {
  for (const fault of ['error', 'timeout', 'truncated', 'nonzero'] as const) {
    const { events, hit } = await run({ seed: 3, rules: [{ tool: 'shell', rate: 1, fault }] });
    assert.equal(hit.length, CALLS, `${fault}: every shell call hit at rate 1`);
    const r = events.flatMap((e) => (e.type === 'tool.result' ? [e.data] : []))[0]!;
    assert.equal(r.injected, fault);
    const expected = { error: 'TransientError', timeout: 'Timeout', truncated: undefined, nonzero: 'NonZeroExit' }[fault];
    assert.equal(r.error, expected, fault);
    assert.equal(r.ok, fault === 'truncated');
    const last = events.flatMap((e) => (e.type === 'tool.result' ? [e.data] : [])).at(-1)!;
    assert.equal(last.error, 'NotFound', `${fault}: nothing reached the sandbox, so there is no log`);
  }
});
