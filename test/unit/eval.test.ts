/** The eval suite parser, the Wilson interval and the comparison of two eval reports (common/eval.ts). */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { compare, parseSuite, report, setupKey, SuiteError, wilson, type EvalResult, type RolloutRecord } from '../../common/eval';

test('wilson: textbook values of the 95% score interval', () => {
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 5e-4, `${a} is not ${b}`);
  const half = wilson(5, 10);
  close(half.low, 0.2366);
  close(half.high, 0.7634);
  const none = wilson(0, 10);
  assert.equal(none.low, 0);
  close(none.high, 0.2775);
  const all = wilson(10, 10);
  close(all.low, 0.7225);
  assert.equal(all.high, 1);
  close(wilson(81, 263).low, 0.2553); // Wilson (1927) / Newcombe (1998) example: 81 of 263
  close(wilson(81, 263).high, 0.3662);
  assert.deepEqual(wilson(0, 0), { passed: 0, total: 0, rate: 0, low: 0, high: 1 });
  assert.throws(() => wilson(3, 2), RangeError);
  assert.throws(() => wilson(1.5, 2), RangeError);
});

test('wilson: the interval narrows as rollouts grow and always holds the rate', () => {
  let width = 1;
  for (const n of [4, 16, 64, 256]) {
    const r = wilson(n / 2, n);
    assert.ok(r.low <= r.rate && r.rate <= r.high);
    assert.ok(r.high - r.low < width, `n=${n}`);
    width = r.high - r.low;
  }
});

const line = (o: unknown) => JSON.stringify(o);
const ok = { id: 't1', prompt: 'do it', check: 'true' };

test('parseSuite: reads tasks, skips blank and # lines', () => {
  const tasks = parseSuite(['# comment', line(ok), '', line({ ...ok, id: 't2', setup: { files: { 'a/b.txt': 'x' }, commands: ['ls'] } })].join('\n'));
  assert.equal(tasks.length, 2);
  assert.deepEqual(tasks[1]?.setup, { files: { 'a/b.txt': 'x' }, commands: ['ls'] });
});

test('parseSuite: each problem names its line and field', () => {
  const problem = (text: string): SuiteError => {
    try {
      parseSuite(text);
    } catch (err) {
      assert.ok(err instanceof SuiteError, String(err));
      return err;
    }
    assert.fail('accepted');
  };
  const cases: Array<[string, number, string | undefined, RegExp]> = [
    [`${line(ok)}\n{not json`, 2, undefined, /not JSON/],
    [line({ prompt: 'p', check: 'c' }), 1, 'id', /required/],
    [line({ ...ok, prompt: '' }), 1, 'prompt', /non-empty/],
    [line({ ...ok, check: 3 }), 1, 'check', /string/],
    [line({ ...ok, id: 'has space' }), 1, 'id', /letters/],
    [`${line(ok)}\n\n${line(ok)}`, 3, 'id', /already the id of line 1/],
    [line({ ...ok, extra: 1 }), 1, 'extra', /unknown field/],
    [line({ ...ok, setup: { files: { '/etc/x': 'y' } } }), 1, 'setup.files./etc/x', /relative/],
    [line({ ...ok, setup: { files: { '../x': 'y' } } }), 1, 'setup.files.../x', /relative/],
    [line({ ...ok, setup: { files: { x: 1 } } }), 1, 'setup.files.x', /string/],
    [line({ ...ok, setup: { commands: 'ls' } }), 1, 'setup.commands', /list/],
    [line({ ...ok, setup: { commands: ['ls', ''] } }), 1, 'setup.commands[1]', /non-empty/],
    [line({ ...ok, setup: { env: {} } }), 1, 'setup.env', /unknown/],
    [line({ ...ok, script: [] }), 1, 'script', /non-empty/],
    [line({ ...ok, script: [{ toolCalls: [{}] }] }), 1, 'script[0].toolCalls', /name/],
    ['[1,2]', 1, undefined, /object/],
    ['# only a comment', 1, undefined, /no tasks/],
  ];
  for (const [text, n, field, message] of cases) {
    const err = problem(text);
    assert.equal(err.line, n, text);
    assert.equal(err.field, field, text);
    assert.match(err.message, message, text);
    assert.match(err.message, new RegExp(`^line ${n}`));
  }
});

test('parseSuite: the example suite parses, and its two stats tasks share one setup', () => {
  const tasks = parseSuite(readFileSync(join(__dirname, '../../examples/eval/suite.jsonl'), 'utf8'));
  assert.equal(tasks.length, 5);
  assert.ok(tasks.every((t) => t.script?.length));
  const keys = tasks.map((t) => setupKey(t.setup));
  assert.equal(keys[0], keys[1]);
  assert.notEqual(keys[0], undefined);
  assert.equal(new Set(keys.filter(Boolean)).size, 2);
  assert.equal(setupKey({ files: {}, commands: [] }), undefined);
  assert.equal(setupKey({ files: { a: '1', b: '2' } }), setupKey({ files: { b: '2', a: '1' } }));
});

function record(taskId: string, rollout: number, passed: boolean, extra: Partial<RolloutRecord> = {}): RolloutRecord {
  return { taskId, rollout, sessionId: `e.${taskId}.${rollout}`, status: 'completed', passed, usage: { inputTokens: 10, outputTokens: 5 }, wallMs: 1000, steps: 2, toolCalls: 1, ...extra };
}
const contract = (model: string, executor = 'x1') => ({ model: { provider: 'scripted', model, maxOutputTokens: 4096 }, tools: [{ name: 'shell', schemaSha: 'aa' }], keelVersion: '0.2.0', sandbox: { image: 'img', imageId: 'sha256:1', imageDigests: [], executor, limits: { memoryMb: 1, cpus: 1, pidsLimit: 1 }, network: 'none' } });

test('report: per task and overall, costs only when every rollout has one', () => {
  const result: EvalResult = { evalId: 'e', model: 'scripted:x', rollouts: 2, records: [record('a', 0, true, { costUsd: 0.5 }), record('a', 1, false, { costUsd: 0.25 }), record('b', 0, true), record('b', 1, true)], contracts: [] };
  const r = report(result);
  assert.deepEqual(r.tasks.map((t) => [t.taskId, t.pass.passed, t.pass.total]), [['a', 1, 2], ['b', 2, 2]]);
  assert.equal(r.tasks[0]?.costUsd, 0.75);
  assert.equal(r.tasks[1]?.costUsd, undefined);
  assert.equal(r.overall.pass.passed, 3);
  assert.equal(r.overall.inputTokens, 40);
  assert.equal(r.overall.meanSteps, 2);
});

test('compare: rates, significance, tasks on one side only, and contract fields that changed', () => {
  const many = (taskId: string, n: number, passes: number) => Array.from({ length: n }, (_, i) => record(taskId, i, i < passes, { contract: 0 }));
  const a = report({ evalId: 'a', model: 'm', rollouts: 20, records: [...many('x', 20, 2), ...many('y', 20, 10), ...many('gone', 20, 20)], contracts: [contract('m1')] });
  const b = report({ evalId: 'b', model: 'm', rollouts: 20, records: [...many('x', 20, 19), ...many('y', 20, 11), ...many('new', 20, 0)], contracts: [contract('m2', 'x2')] });
  const c = compare(a, b);
  const x = c.tasks.find((t) => t.taskId === 'x');
  assert.ok(x?.significant, '2/20 -> 19/20 is no noise');
  assert.ok(Math.abs((x?.delta ?? 0) - 0.85) < 1e-9);
  assert.equal(c.tasks.find((t) => t.taskId === 'y')?.significant, false, '10/20 -> 11/20 is');
  assert.equal(c.tasks.find((t) => t.taskId === 'gone')?.after, undefined);
  assert.equal(c.tasks.find((t) => t.taskId === 'new')?.before, undefined);
  assert.deepEqual(c.tasks.map((t) => t.taskId), ['x', 'y', 'gone', 'new']);
  assert.deepEqual(c.contract.map((d) => d.field), ['model.model', 'sandbox.executor']);
  assert.deepEqual(compare(a, a).contract, []);
  assert.equal(compare(a, a).overall.delta, 0);
});
