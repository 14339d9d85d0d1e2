import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EMPTY_ASSISTANT_TEXT, EMPTY_TOOL_OUTPUT, historyToolInput, toModelMessages } from '../../activities/model/messages';
import type { Message } from '../../common/types';

test('user, assistant (text + tool calls) and tool results convert to AI SDK messages', () => {
  const messages: Message[] = [
    { role: 'user', text: 'fix the build' },
    {
      role: 'assistant',
      text: 'Let me look.',
      toolCalls: [
        { id: 'c1', name: 'shell', input: { command: 'make' } },
        { id: 'c2', name: 'read_file', input: { path: 'Makefile' } },
      ],
    },
    {
      role: 'tool',
      results: [
        { callId: 'c1', name: 'shell', ok: false, output: 'make: *** error 2', exitCode: 2 },
        { callId: 'c2', name: 'read_file', ok: true, output: '1\tall:' },
      ],
    },
    { role: 'user', text: 'and?' },
  ];
  assert.deepEqual(toModelMessages(messages), [
    { role: 'user', content: 'fix the build' },
    {
      role: 'assistant',
      content: [
        { type: 'text', text: 'Let me look.' },
        { type: 'tool-call', toolCallId: 'c1', toolName: 'shell', input: { command: 'make' } },
        { type: 'tool-call', toolCallId: 'c2', toolName: 'read_file', input: { path: 'Makefile' } },
      ],
    },
    {
      role: 'tool',
      content: [
        { type: 'tool-result', toolCallId: 'c1', toolName: 'shell', output: { type: 'error-text', value: 'make: *** error 2' } },
        { type: 'tool-result', toolCallId: 'c2', toolName: 'read_file', output: { type: 'text', value: '1\tall:' } },
      ],
    },
    { role: 'user', content: 'and?' },
  ]);
});

test('an assistant turn with only tool calls has no text part', () => {
  const [m] = toModelMessages([{ role: 'assistant', toolCalls: [{ id: 'x', name: 'list_files', input: {} }] }]);
  assert.deepEqual(m, { role: 'assistant', content: [{ type: 'tool-call', toolCallId: 'x', toolName: 'list_files', input: {} }] });
});

test('empty assistant turns and empty tool output get placeholders (providers reject empty content)', () => {
  const out = toModelMessages([
    { role: 'assistant', text: '', toolCalls: [] },
    { role: 'tool', results: [{ callId: 'c', name: 'shell', ok: true, output: '' }] },
  ]);
  assert.deepEqual(out[0], { role: 'assistant', content: [{ type: 'text', text: EMPTY_ASSISTANT_TEXT }] });
  assert.deepEqual(out[1], {
    role: 'tool',
    content: [{ type: 'tool-result', toolCallId: 'c', toolName: 'shell', output: { type: 'text', value: EMPTY_TOOL_OUTPUT } }],
  });
});

test('non-object tool inputs (raw invalid JSON, arrays, null) are wrapped so every provider accepts them back', () => {
  assert.deepEqual(historyToolInput('{"command": "ls'), { invalid_arguments: '{"command": "ls' });
  assert.deepEqual(historyToolInput([1, 2]), { invalid_arguments: '[1,2]' });
  assert.deepEqual(historyToolInput(null), { invalid_arguments: 'null' });
  assert.deepEqual(historyToolInput(undefined), { invalid_arguments: 'undefined' });
  const obj = { command: 'ls' };
  assert.equal(historyToolInput(obj), obj);
  const [m] = toModelMessages([{ role: 'assistant', toolCalls: [{ id: 'b', name: 'shell', input: '{oops' }] }]);
  assert.deepEqual(m, {
    role: 'assistant',
    content: [{ type: 'tool-call', toolCallId: 'b', toolName: 'shell', input: { invalid_arguments: '{oops' } }],
  });
});
