/**
 * Approval policies: first match wins, globs on paths, and shell patterns that see
 * through the usual ways of spelling a command differently.
 *
 *   node --import tsx --test test/unit/policy.test.ts
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { injectionProblems } from '../../common/inject';
import { evaluatePolicy, globToRegExp, policyProblems, simpleCommands, type ApprovalPolicy } from '../../common/policy';
import { toolNames } from '../../common/tools';
import type { FaultInjection } from '../../common/types';

/** A policy in the shape of the README's example. */
const policy: ApprovalPolicy = {
  default: 'allow',
  rules: [
    { tool: 'write_file', path: '/workspace/**/.git/**', action: 'deny', reason: 'git internals are off limits' },
    { tool: 'write_file', path: '/workspace/.git/**', action: 'deny', reason: 'git internals are off limits' },
    { tool: 'edit_file', path: '/workspace/.git/**', action: 'deny' },
    { tool: 'shell', command: 'git push|rm -rf|curl|pip install', action: 'ask', reason: 'pushes, deletions and downloads need a person' },
  ],
};
const shell = (command: string) => evaluatePolicy(policy, 'shell', { command }).action;

test('commands that match ask; others are allowed by default', () => {
  assert.equal(shell('git push origin main'), 'ask');
  assert.equal(shell('pip install requests'), 'ask');
  assert.equal(shell('ls -la && python3 -m unittest'), 'allow');
  assert.equal(shell('git status'), 'allow');
});

for (const dodge of [
  'rm  -rf build',
  "'rm' -rf build",
  'r\\m -rf build',
  '"r"m -rf build',
  'bash -c "rm -rf build"',
  "sh -c 'cd /tmp && rm -rf build'",
  'command rm -rf build',
  'sudo -n rm -rf build',
  'env X=1 rm -rf build',
  'X=1 rm -rf build',
  '/bin/rm -rf build',
  'true; rm -rf build',
  'echo $(rm -rf build)',
  'eval "rm -rf build"',
  'nohup rm -rf build &',
  'rm \\\n  -rf build',
]) {
  test(`a rewritten rm -rf is still caught: ${JSON.stringify(dodge)}`, () => {
    assert.equal(shell(dodge), 'ask', `forms: ${JSON.stringify(simpleCommands(dodge))}`);
  });
}

test('paths are matched as the sandbox resolves them, with globs', () => {
  assert.equal(evaluatePolicy(policy, 'write_file', { path: '.git/config', content: '' }).action, 'deny');
  assert.equal(evaluatePolicy(policy, 'write_file', { path: '/workspace/src/../.git/HEAD', content: '' }).action, 'deny');
  assert.equal(evaluatePolicy(policy, 'write_file', { path: 'lib/vendor/.git/x', content: '' }).action, 'deny');
  assert.equal(evaluatePolicy(policy, 'write_file', { path: 'src/gitignore.md', content: '' }).action, 'allow');
  assert.equal(evaluatePolicy(policy, 'edit_file', { path: '.git/config', old_string: 'a', new_string: 'b' }).rule?.action, 'deny');
  assert.ok(globToRegExp('/workspace/*.py').test('/workspace/a.py'));
  assert.ok(!globToRegExp('/workspace/*.py').test('/workspace/src/a.py'));
  assert.ok(globToRegExp('/workspace/**/*.py').test('/workspace/src/deep/a.py'));
});

test('the first matching rule wins, the default decides the rest, remembered approvals match exactly', () => {
  const p: ApprovalPolicy = {
    default: 'ask',
    rules: [
      { tool: 'shell', command: '^ls', action: 'allow' },
      { tool: 'shell', command: 'ls', action: 'deny' },
      { tool: 'read_file', action: 'allow' },
      { tool: 'shell', exact: '{"command":"make deploy"}', action: 'allow' },
    ],
  };
  assert.equal(evaluatePolicy(p, 'shell', { command: 'ls -l' }).ruleIndex, 0);
  assert.equal(evaluatePolicy(p, 'shell', { command: 'echo ls' }).action, 'deny');
  assert.equal(evaluatePolicy(p, 'shell', { command: 'cat x | ls' }).action, 'allow', 'the simple command ls matches ^ls first');
  assert.equal(evaluatePolicy(p, 'read_file', { path: 'x' }).action, 'allow');
  assert.equal(evaluatePolicy(p, 'write_file', { path: 'x', content: '' }).action, 'ask');
  assert.equal(evaluatePolicy(p, 'shell', { command: 'make deploy' }, '{"command":"make deploy"}').action, 'allow');
  assert.equal(evaluatePolicy(p, 'shell', { command: 'make deploy --force' }, '{"command":"make deploy --force"}').action, 'ask');
});

test('bad policies are refused with the field named', () => {
  assert.deepEqual(policyProblems(policy), []);
  const problems = policyProblems({ default: 'maybe' as never, rules: [{ tool: 'shell', action: 'ask', command: '(' }] });
  assert.equal(problems.length, 2);
  assert.match(problems[0] ?? '', /policy\.default/);
  assert.match(problems[1] ?? '', /rules\[0\]\.command is not a regular expression/);
});

test('the example policy the README ships is valid and does what the README says', () => {
  const text = readFileSync(join(__dirname, '..', '..', 'examples', 'policy.json'), 'utf8');
  assert.ok(readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8').includes(text.trim()), 'README shows examples/policy.json verbatim');
  const policy = JSON.parse(text) as ApprovalPolicy;
  assert.deepEqual(policyProblems(policy, toolNames), []);
  assert.equal(evaluatePolicy(policy, 'shell', { command: 'git push origin main' }).action, 'ask');
  assert.equal(evaluatePolicy(policy, 'shell', { command: "bash -c 'pip  install requests'" }).action, 'ask');
  assert.equal(evaluatePolicy(policy, 'write_file', { path: '.git/config', content: '' }).action, 'deny');
  assert.equal(evaluatePolicy(policy, 'edit_file', { path: '/workspace/repo/.git/HEAD', old_string: 'a', new_string: 'b' }).action, 'deny');
  assert.equal(evaluatePolicy(policy, 'shell', { command: 'pytest -q' }).action, 'allow');
  const inject = JSON.parse(readFileSync(join(__dirname, '..', '..', 'examples', 'inject.json'), 'utf8')) as FaultInjection;
  assert.deepEqual(injectionProblems(inject, toolNames), []);
});
