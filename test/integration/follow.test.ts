/**
 * `keel tail` and `keel run` follow a session through LISTEN/NOTIFY (store/subscribe.ts), the
 * path the API's stream uses: every event once, in order, live, on real Temporal, Docker and
 * Postgres.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import type { ScriptTurn } from '../../common/types';
import { getEvents } from '../../store';
import { runCli } from '../helpers/cli';
import { ensureSandboxImage, uniqueId } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { startStack, type Stack } from '../helpers/stack';

let stack: Stack;
const docker = new Docker();

before(async () => {
  await ensureSandboxImage(docker);
  stack = await startStack('follow-host');
});
after(async () => {
  await stack?.stop();
});

const shell = (command: string): ScriptTurn => ({ toolCalls: [{ name: 'shell', input: { command } }] });
const cli = (...args: string[]) => runCli(args, stack.env);

describe('keel tail', () => {
  test('prints every event of a live session once, in order, as it is recorded, and returns when it ends', async () => {
    const id = uniqueId('tail');
    await stack.client.start({ task: 'tail me', model: { provider: 'scripted', model: 'tail', script: [shell('echo one'), { text: 'waiting' }, shell('echo two'), { text: 'bye' }] }, keepAlive: true }, { sessionId: id });
    await waitForEvent(stack.sql, id, (e) => e.type === 'session.started');
    const tail = cli('tail', id, '--json');
    await stack.client.untilIdle(id, { pollMs: 100 });
    await stack.client.message(id, 'go on');
    await waitForEvent(stack.sql, id, (e) => e.type === 'model.call' && e.data.text === 'bye');
    await stack.client.untilIdle(id, { pollMs: 100 });
    await stack.client.closeSession(id);
    const out = await tail;
    assert.equal(out.code, 0, out.stderr);
    const printed = out.stdout.trim().split('\n').map((l) => JSON.parse(l) as { seq: number; type: string });
    const recorded = (await getEvents(stack.sql, id)).map((e) => e.seq);
    const ended = recorded.indexOf(printed.at(-1)!.seq);
    assert.equal(printed.at(-1)?.type, 'session.ended');
    assert.deepEqual(printed.map((e) => e.seq), recorded.slice(0, ended + 1));
    assert.ok(printed.some((e) => e.type === 'message.user'));

    // After the end: the rest of the log from a seq, and back at once.
    const rest = await cli('tail', id, '--json', '--after', String(recorded.at(-3)));
    assert.equal(rest.code, 0, rest.stderr);
    assert.deepEqual(rest.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { seq: number }).seq), recorded.slice(-2));
    const human = await cli('tail', id);
    assert.match(human.stdout, /✓\s+1\s+shell\s+echo one/);
    assert.match(human.stdout, /✓\s+3\s+shell\s+echo two/);
  });

  test('a session that does not exist is refused', async () => {
    const r = await cli('tail', uniqueId('nope'));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no session .* in the event log/);
  });
});

describe('keel run', () => {
  test('prints each step once, in order, live', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keel-follow-'));
    const script = join(dir, 'turns.json');
    const turns = [1, 2, 3, 4, 5].map((i) => shell(`echo step${i}`));
    writeFileSync(script, JSON.stringify([...turns, { text: 'all done' }]));
    const r = await cli('run', 'count to five', '--script', script, '--no-worker');
    assert.equal(r.code, 0, r.stderr);
    const progress = r.stdout.split('\ntimeline (from Postgres):')[0]!;
    const steps = progress.split('\n').filter((l) => /^\s+✓/.test(l)).map((l) => /echo (step\d)/.exec(l)?.[1]);
    assert.deepEqual(steps, ['step1', 'step2', 'step3', 'step4', 'step5']);
    assert.match(progress, /session \S+ completed: 6 model turns, 5 tool calls/);
  });
});
