import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { createModelActivities } from '../../activities/model';
import { connect } from '../../store';
import { scratchBlobs } from '../helpers/env';
import type { Message, ModelSpec, ScriptTurn } from '../../common/types';

const script: ScriptTurn[] = [
  { text: 'Creating the file.', toolCalls: [{ name: 'write_file', input: { path: 'a.txt', content: 'hi' } }, { name: 'shell', input: { command: 'cat a.txt' } }] },
  { text: 'Done.' },
];
const spec: ModelSpec = { provider: 'scripted', model: 'demo', script };
const { callModel } = createModelActivities({ config: {}, sql: connect('postgres://keel@127.0.0.1:1/unused'), blobs: scratchBlobs() });
const user: Message = { role: 'user', text: 'make a.txt' };

test('turn 0 plays the first scripted turn through generateText, with ids call_<turn>_<i>', async () => {
  const turn = await callModel({ sessionId: 's', model: spec, system: 'sys', messages: [user] });
  assert.equal(turn.text, 'Creating the file.');
  assert.deepEqual(turn.toolCalls, [
    { id: 'call_0_0', name: 'write_file', input: { path: 'a.txt', content: 'hi' } },
    { id: 'call_0_1', name: 'shell', input: { command: 'cat a.txt' } },
  ]);
  assert.equal(turn.finishReason, 'tool-calls');
  assert.ok(turn.usage.inputTokens > 0 && turn.usage.outputTokens > 0);
});

test('the turn is the number of assistant messages in the prompt', async () => {
  const messages: Message[] = [
    user,
    { role: 'assistant', text: 'Creating the file.', toolCalls: [{ id: 'call_0_0', name: 'write_file', input: { path: 'a.txt', content: 'hi' } }] },
    { role: 'tool', results: [{ callId: 'call_0_0', name: 'write_file', ok: true, output: 'wrote 2 bytes' }] },
  ];
  const turn = await callModel({ sessionId: 's', model: spec, system: 'sys', messages });
  assert.equal(turn.text, 'Done.');
  assert.deepEqual(turn.toolCalls, []);
  assert.equal(turn.finishReason, 'stop');
  // Same prompt, same answer: a retried activity is deterministic.
  assert.deepEqual((await callModel({ sessionId: 's', model: spec, system: 'sys', messages })).text, 'Done.');
});

test('input tokens grow with the prompt', async () => {
  const small = await callModel({ sessionId: 's', model: spec, system: '', messages: [user] });
  const big = await callModel({ sessionId: 's', model: spec, system: '', messages: [{ role: 'user', text: 'x'.repeat(4000) }] });
  assert.ok(big.usage.inputTokens >= small.usage.inputTokens + 900, `${big.usage.inputTokens} vs ${small.usage.inputTokens}`);
});

test('an exhausted script is a non-retryable Model.ScriptExhausted naming the turn', async () => {
  const messages: Message[] = [user, { role: 'assistant', text: 'a', toolCalls: [] }, { role: 'user', text: 'more' }, { role: 'assistant', text: 'b', toolCalls: [] }];
  await assert.rejects(callModel({ sessionId: 's', model: spec, system: '', messages }), (err: unknown) => {
    assert.ok(err instanceof ApplicationFailure);
    assert.equal(err.type, 'Model.ScriptExhausted');
    assert.equal(err.nonRetryable, true);
    assert.match(err.message, /ran out of turns at turn 2/);
    return true;
  });
});

test('unknown tools and malformed arguments come back as tool calls (AI SDK marks them invalid, does not throw)', async () => {
  const bad: ModelSpec = {
    provider: 'scripted',
    model: 'bad',
    script: [{ toolCalls: [{ name: 'launch_rockets', input: { n: 1 } }, { name: 'shell', input: '{"command": ' }, { name: 'shell', input: { command: 5 } }] }],
  };
  const turn = await callModel({ sessionId: 's', model: bad, system: '', messages: [user] });
  assert.deepEqual(turn.toolCalls, [
    { id: 'call_0_0', name: 'launch_rockets', input: { n: 1 } },
    { id: 'call_0_1', name: 'shell', input: '{"command": ' },
    { id: 'call_0_2', name: 'shell', input: { command: 5 } },
  ]);
  assert.equal(turn.text, undefined);
});
