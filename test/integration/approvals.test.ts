/**
 * Approval policies on real Temporal, Docker and Postgres: a call the policy
 * asks about waits for a person (answered by Temporal Update, through the CLI
 * and the client library), a denial reaches the model as the call's result and
 * nothing runs, an unanswered call is denied at its timeout, "remember" allows
 * the same call again, and a denied pattern stays denied however the model
 * rewrites it. (A 3-day wait is in suspend.test.ts; a worker SIGKILLed while a
 * call waits is in crash.test.ts.)
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import { SessionError } from '../../common/errors';
import type { EventRow } from '../../common/events';
import type { ApprovalPolicy } from '../../common/policy';
import type { ScriptTurn, SessionSpec } from '../../common/types';
import { getEvents } from '../../store';
import { runCli } from '../helpers/cli';
import { ensureSandboxImage, sessionContainers, uniqueId } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { recordHistory } from '../helpers/history';
import { startStack, type Stack } from '../helpers/stack';

/** The README's example policy. */
const README_POLICY: ApprovalPolicy = {
  default: 'allow',
  rules: [
    { tool: 'shell', command: 'git push|rm -rf|curl|pip install', action: 'ask', reason: 'pushes, deletes, downloads and installs need a person' },
    { tool: 'write_file', path: '**/.git/**', action: 'deny', reason: 'the repository metadata is off limits' },
    { tool: 'edit_file', path: '**/.git/**', action: 'deny', reason: 'the repository metadata is off limits' },
  ],
};

let stack: Stack;
const docker = new Docker();

before(async () => {
  await ensureSandboxImage(docker);
  stack = await startStack('approvals-host');
});

after(async () => {
  await stack?.stop();
});

function spec(task: string, script: ScriptTurn[], policy: ApprovalPolicy = README_POLICY): SessionSpec {
  return { task, model: { provider: 'scripted', model: 'approvals', script }, policy };
}

const shell = (command: string): ScriptTurn => ({ toolCalls: [{ name: 'shell', input: { command } }] });
const results = (events: EventRow[]) => events.filter((e): e is Extract<EventRow, { type: 'tool.result' }> => e.type === 'tool.result').map((e) => e.data);
const cli = (...args: string[]) => runCli(args, stack.env);

describe('a call the policy asks about', () => {
  test('waits, is listed by keel pending, and runs exactly once when approved with keel approve', async () => {
    const id = uniqueId('approve');
    await stack.client.start(
      spec('push the fix', [
        shell('git push origin main 2>/dev/null; echo attempt >> /workspace/push.log; echo pushed'),
        shell('wc -l < /workspace/push.log'),
        shell('curl -s http://example.com'),
        { text: 'done' },
      ]),
      { sessionId: id },
    );
    const requested = await waitForEvent(sql(), id, (e) => e.type === 'approval.requested');
    assert.equal(requested.type === 'approval.requested' && requested.data.callId, 'call_0_0');

    const state = await stack.client.status(id);
    assert.equal(state.status, 'waiting');
    assert.equal(state.waitingFor, 'approval');
    assert.equal(state.pendingApprovals?.[0]?.callId, 'call_0_0');
    assert.match(state.pendingApprovals?.[0]?.summary ?? '', /git push/);

    const pending = await cli('pending', '--json');
    assert.equal(pending.code, 0, pending.stderr);
    const mine = (JSON.parse(pending.stdout) as Array<{ sessionId: string; callId: string; tool: string; waitedSec: number }>).filter((p) => p.sessionId === id);
    assert.deepEqual(mine.map((p) => [p.callId, p.tool]), [['call_0_0', 'shell']]);
    assert.ok(mine[0]!.waitedSec >= 0);
    const show = await cli('show', id);
    assert.match(show.stdout, /waiting for approval/);
    assert.match(show.stdout, new RegExp(`keel approve ${id} call_0_0`));
    const idle = await cli('wait', id, '--until-idle');
    assert.equal(idle.code, 6, idle.stdout + idle.stderr);
    assert.match(idle.stdout, /waiting for approval of call_0_0/);

    // Nothing ran while it waited.
    const before = results(await getEvents(sql(), id));
    assert.equal(before.length, 0);

    // Answers the validator refuses: an unknown call, and a denial without a reason.
    await assert.rejects(stack.client.approve(id, 'call_9_9', { by: 'alice' }), (err: Error) => err instanceof SessionError && /no call call_9_9 is waiting for approval.*call_0_0/.test(err.message));
    await assert.rejects(stack.client.deny(id, 'call_0_0', { by: 'alice', reason: ' ' }), SessionError);

    const approved = await cli('approve', id, 'call_0_0', '--as', 'alice');
    assert.equal(approved.code, 0, approved.stderr);
    // While the next risky call waits, a second answer to the first is refused.
    await waitForEvent(sql(), id, (e) => e.type === 'approval.requested' && e.data.callId === 'call_2_0');
    const again = await cli('approve', id, 'call_0_0', '--as', 'bob');
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /call_0_0 was already answered \(approved by alice\)/);
    const denied = await cli('deny', id, 'call_2_0', '--reason', 'no downloads', '--as', 'bob');
    assert.equal(denied.code, 0, denied.stderr);

    const result = await stack.client.result(id);
    assert.equal(result.status, 'completed', result.error);
    const events = await getEvents(sql(), id);
    const out = results(events);
    assert.equal(out[0]?.ok, true);
    assert.equal(out[1]?.output.trim(), '1', 'the approved command ran exactly once');
    const decided = events.find((e) => e.type === 'approval.decided');
    assert.ok(decided?.type === 'approval.decided');
    assert.equal(decided.data.decision, 'approve');
    assert.equal(decided.data.by, 'alice');
    assert.ok(decided.data.waitedSec >= 0);
    // The order the audit trail tells: the call, the request, the decision, the result.
    const order = events.filter((e) => ['tool.call', 'approval.requested', 'approval.decided', 'tool.result'].includes(e.type)).slice(0, 4).map((e) => e.type);
    assert.deepEqual(order, ['tool.call', 'approval.requested', 'approval.decided', 'tool.result']);
    await recordHistory(stack.client.temporal, id, 'approval-session.json');
  });

  test('denied with a reason: the model gets the reason as the result and nothing runs', async () => {
    const id = uniqueId('deny');
    await stack.client.start(
      spec('clean up', [shell('rm -rf /workspace/data; echo removed > /workspace/marker'), shell('test -e /workspace/marker && echo ran || echo did-not-run'), { text: 'done' }]),
      { sessionId: id },
    );
    await waitForEvent(sql(), id, (e) => e.type === 'approval.requested');
    await stack.client.deny(id, 'call_0_0', { by: 'bob', reason: 'not on a Friday' });
    const result = await stack.client.result(id);
    assert.equal(result.status, 'completed', result.error);
    const out = results(await getEvents(sql(), id));
    assert.equal(out[0]?.ok, false);
    assert.equal(out[0]?.error, 'Denied');
    assert.match(out[0]?.output ?? '', /Denied by bob: not on a Friday/);
    assert.equal(out[1]?.output.trim(), 'did-not-run');
    const decided = (await getEvents(sql(), id)).find((e) => e.type === 'approval.decided');
    assert.ok(decided?.type === 'approval.decided' && decided.data.decision === 'deny' && decided.data.reason === 'not on a Friday');
  });

  test('left unanswered, it is denied at the policy timeout', async () => {
    const id = uniqueId('timeout');
    const policy: ApprovalPolicy = { ...README_POLICY, timeoutSec: 2 };
    await stack.client.start(spec('download', [shell('curl -s http://example.com > /workspace/page; echo fetched'), shell('ls /workspace'), { text: 'done' }], policy), { sessionId: id });
    const result = await stack.client.result(id);
    assert.equal(result.status, 'completed', result.error);
    const events = await getEvents(sql(), id);
    const out = results(events);
    assert.equal(out[0]?.error, 'Denied');
    assert.match(out[0]?.output ?? '', /nobody approved this call within 2 s/);
    assert.doesNotMatch(out[1]?.output ?? '', /page/, 'nothing was written');
    const decided = events.find((e) => e.type === 'approval.decided');
    assert.ok(decided?.type === 'approval.decided' && decided.data.decision === 'timeout');
  });

  test('approve and remember: the same call runs again without asking; a different one still asks', async () => {
    const id = uniqueId('remember');
    const same = 'pip install --no-index requests 2>/dev/null; echo try >> /workspace/pip.log';
    await stack.client.start(
      spec('install', [shell(same), shell(same), shell('pip install --no-index flask 2>/dev/null; echo other >> /workspace/pip.log'), shell('cat /workspace/pip.log'), { text: 'done' }]),
      { sessionId: id },
    );
    await waitForEvent(sql(), id, (e) => e.type === 'approval.requested');
    await stack.client.approve(id, 'call_0_0', { by: 'carol', remember: true });
    const third = await waitForEvent(sql(), id, (e) => e.type === 'approval.requested' && e.data.callId !== 'call_0_0');
    assert.equal(third.type === 'approval.requested' && third.data.callId, 'call_2_0', 'the identical second call did not ask');
    await stack.client.approve(id, 'call_2_0', { by: 'carol' });
    const result = await stack.client.result(id);
    assert.equal(result.status, 'completed', result.error);
    const events = await getEvents(sql(), id);
    assert.equal(events.filter((e) => e.type === 'approval.requested').length, 2);
    assert.deepEqual(results(events)[3]?.output.trim().split('\n'), ['try', 'try', 'other']);
    const remembered = events.find((e) => e.type === 'approval.decided' && e.data.callId === 'call_0_0');
    assert.ok(remembered?.type === 'approval.decided' && remembered.data.remember === true);
  });
});

test('a denied pattern is not run however the model rewrites it, and writes under .git/ are denied', async () => {
  const policy: ApprovalPolicy = {
    rules: [
      { tool: 'shell', command: 'rm -rf', action: 'deny', reason: 'no recursive deletes' },
      ...(README_POLICY.rules ?? []).filter((r) => r.tool !== 'shell'),
    ],
  };
  const evasions = [
    'rm  -rf /workspace/keep',
    "'rm' -rf /workspace/keep",
    'r\\m -rf /workspace/keep',
    'bash -c "rm -rf /workspace/keep"',
    'command rm -rf /workspace/keep',
    'sh -c \'cd /workspace && rm -rf keep\'',
    'true && rm -rf /workspace/keep',
    'env FOO=1 rm -rf /workspace/keep',
  ];
  const script: ScriptTurn[] = [
    shell('mkdir -p /workspace/keep /workspace/repo/.git && echo precious > /workspace/keep/f && echo ok'),
    ...evasions.map(shell),
    { toolCalls: [{ name: 'write_file', input: { path: 'repo/.git/config', content: '[core]\n' } }] },
    { toolCalls: [{ name: 'edit_file', input: { path: '/workspace/repo/.git/HEAD', old_string: 'x', new_string: 'y' } }] },
    shell('cat /workspace/keep/f; ls -A /workspace/repo/.git | wc -l'),
    { text: 'done' },
  ];
  const id = uniqueId('evasion');
  await stack.client.start(spec('try to delete', script, policy), { sessionId: id });
  const result = await stack.client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const out = results(await getEvents(sql(), id));
  assert.equal(out.length, evasions.length + 4);
  for (const [i, r] of out.slice(1, 1 + evasions.length).entries()) {
    assert.equal(r.error, 'Denied', `${evasions[i]} was ${r.ok ? 'run' : r.error}`);
    assert.match(r.output, /no recursive deletes/);
  }
  assert.equal(out[evasions.length + 1]?.error, 'Denied', 'write_file under .git/');
  assert.equal(out[evasions.length + 2]?.error, 'Denied', 'edit_file under .git/');
  assert.deepEqual(out.at(-1)?.output.trim().split('\n'), ['precious', '0']);
  assert.deepEqual(await sessionContainers(docker, id), []);
});

test('the spec is checked before the session starts: a bad policy is refused with the reason', async () => {
  const bad = (policy: unknown) => stack.client.start({ ...spec('x', [{ text: 'x' }]), policy: policy as ApprovalPolicy });
  await assert.rejects(bad({ rules: [{ tool: 'shel', action: 'ask' }] }), /no tool is called shel/);
  await assert.rejects(bad({ rules: [{ tool: 'shell', action: 'maybe' }] }), /action must be allow, deny or ask/);
  await assert.rejects(bad({ rules: [{ tool: 'shell', action: 'deny', command: '(' }] }), /not a regular expression/);
  await assert.rejects(bad({ rules: 'rm' }), /rules must be a list/);
});

function sql() {
  return stack.sql;
}
