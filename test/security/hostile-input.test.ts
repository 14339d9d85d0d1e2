/**
 * Hostile input through real sessions (real Temporal, Docker, Postgres; the model
 * is a local stand-in for an OpenAI-compatible server, so raw argument text reaches
 * the real AI SDK parser): file names that are not UTF-8, lone surrogates, arguments
 * past Temporal's 2 MB payload limit and past Keel's own, JSON nested 500 deep (an
 * error result) and 20,000 deep (refused before parsing: the session fails cleanly),
 * 8,000 tool calls in one turn, a transcript past 2 MB, output floods, memory past
 * the limit and a process that ignores SIGTERM.
 *
 * Each gets a clear error result or limit; the session then runs one more command
 * (it carries on), completes, tears its container down and leaves its index row
 * `completed`, never `running`. Sizes are bounded for a 2-core machine but each
 * passes the real limit it tests.
 *
 *   node --import tsx --test test/security/hostile-input.test.ts
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import { readBlob } from '../../blobs';
import { MAX_MODEL_RESPONSE_DEPTH, MAX_TOOL_CALLS_PER_TURN, MAX_TOOL_INPUT_BYTES, MAX_TOOL_INPUT_DEPTH, OUTPUT_STORE_CAP } from '../../common/defaults';
import { eventsOfType, type EventRow } from '../../common/events';
import type { SandboxSpec } from '../../common/types';
import { historyBytes, sessionHistories } from '../../inspect';
import { firstEvent, getEvents, getSession } from '../../store';
import { isGvisor } from '../../host';
import { ensureSandboxImage, sessionContainers, testRuntime, uniqueId } from '../helpers/env';
import { FakeLlmServer, type FakeReply, type FakeToolCall } from '../helpers/fake-llm-server';
import { startStack, type Stack } from '../helpers/stack';

const docker = new Docker();
let stack: Stack;
let llm: FakeLlmServer;

before(
  async () => {
    await ensureSandboxImage(docker);
    stack = await startStack('hostile-host');
    llm = await FakeLlmServer.start();
  },
  { timeout: 300_000 },
);

after(async () => {
  await llm?.close();
  await stack?.stop();
});

const shell = (command: string, extra: Record<string, unknown> = {}): FakeToolCall => ({ name: 'shell', args: { command, ...extra } });

/**
 * A session whose model plays `turns`, then one ordinary command, then stops. Asserts that it carried on and
 * ended cleanly; returns its events.
 */
async function survive(name: string, turns: FakeReply[], sandbox?: SandboxSpec): Promise<{ id: string; events: EventRow[] }> {
  llm.reset();
  llm.enqueue(...turns, { toolCalls: [shell('echo still here')] }, { text: 'done' });
  const id = await stack.client.start(
    { task: `hostile input: ${name}`, model: { provider: 'openai-compatible', model: 'hostile', baseURL: llm.url }, ...(sandbox ? { sandbox } : {}) },
    { sessionId: uniqueId(`hostile-${name}`) },
  );
  const result = await stack.client.result(id);
  const events = await getEvents(stack.sql, id);
  assert.equal(result.status, 'completed', `${name}: ${result.error ?? ''}`);
  const last = eventsOfType(events, 'tool.result').at(-1);
  assert.equal(last?.data.output, 'still here\n', `${name}: the session carried on`);
  assert.equal((await getSession(stack.sql, id))?.status, 'completed', `${name}: the index says completed`);
  assert.equal(eventsOfType(events, 'session.ended').length, 1);
  assert.deepEqual(await sessionContainers(docker, id), [], `${name}: the container was torn down`);
  return { id, events };
}

/** The tool results of a session but the last (`echo still here`). */
const results = (events: EventRow[]) => eventsOfType(events, 'tool.result').slice(0, -1).map((e) => e.data);

test('a file name that is not valid UTF-8, then list_files', { timeout: 120_000 }, async () => {
  const { events } = await survive('utf8', [
    { toolCalls: [shell("touch $'report\\xff.txt' ok.txt")] },
    { toolCalls: [{ name: 'list_files', args: { path: '/workspace' } }] },
  ]);
  const [, list] = results(events);
  assert.ok(list?.ok, list?.output);
  assert.match(list?.output ?? '', /ok\.txt/);
  assert.match(list?.output ?? '', /report.+\.txt/, 'the odd name is listed (with the byte replaced)');
});

test('a lone surrogate in the tool input', { timeout: 120_000 }, async () => {
  const { events } = await survive('surrogate', [{ toolCalls: [{ name: 'shell', args: '{"command": "echo \\ud800 lone"}' }] }]);
  const call = eventsOfType(events, 'tool.call')[0];
  assert.match(JSON.stringify(call?.data.input), /\\ufffd lone|\uFFFD lone/, 'stored with U+FFFD in its place');
  assert.equal(results(events)[0]?.output, '\uFFFD lone\n', 'what ran is what the event log records');
});

test('tool arguments past 2 MB run by reference; past the limit they get an error result', { timeout: 180_000 }, async () => {
  const big = 'x'.repeat(3 * 1024 * 1024);
  const huge = 'y'.repeat(MAX_TOOL_INPUT_BYTES + 1024);
  const { id, events } = await survive('big-args', [
    { toolCalls: [{ name: 'write_file', args: { path: '/workspace/big.txt', content: big } }] },
    { toolCalls: [shell('wc -c < /workspace/big.txt')] },
    { toolCalls: [{ name: 'write_file', args: { path: '/workspace/huge.txt', content: huge } }] },
  ]);
  const [write, count, refused] = results(events);
  assert.ok(write?.ok, write?.output);
  assert.equal(count?.output.trim(), String(big.length), 'the whole 3 MB content was written');
  const call = eventsOfType(events, 'tool.call')[0];
  assert.ok((call?.data.inputRef?.bytes ?? 0) > big.length, 'the 3 MB arguments are kept by reference');
  assert.equal(refused?.ok, false);
  assert.equal(refused?.error, 'InvalidArguments');
  assert.match(refused?.output ?? '', new RegExp(`the limit is ${MAX_TOOL_INPUT_BYTES}`));
  await assertHistoryBounded(id);
});

test('JSON nested 500 deep in the arguments gets an error result the model sees', { timeout: 120_000 }, async () => {
  const deep = `{"command": ${'['.repeat(500)}${']'.repeat(500)}}`;
  const { events } = await survive('deep', [{ toolCalls: [{ name: 'shell', args: deep }] }]);
  const [r] = results(events);
  assert.equal(r?.ok, false);
  assert.equal(r?.error, 'InvalidArguments');
  assert.match(r?.output ?? '', new RegExp(`deeper than ${MAX_TOOL_INPUT_DEPTH} levels`));
});

test('JSON nested 20,000 deep is refused before parsing: one model call, then a clean end', { timeout: 120_000 }, async () => {
  llm.reset();
  const deep = `{"command": ${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
  llm.enqueue({ toolCalls: [{ name: 'shell', args: deep }] }, { text: 'a retry would get this' });
  const id = await stack.client.start(
    { task: 'hostile input: very deep', model: { provider: 'openai-compatible', model: 'hostile', baseURL: llm.url } },
    { sessionId: uniqueId('hostile-verydeep') },
  );
  const result = await stack.client.result(id);
  assert.equal(result.status, 'failed');
  assert.match(result.error ?? '', new RegExp(`nested deeper than ${MAX_MODEL_RESPONSE_DEPTH} levels`));
  assert.equal(llm.requests.length, 1, 'not retried: one paid call');
  const events = await getEvents(stack.sql, id);
  assert.equal(eventsOfType(events, 'session.error')[0]?.data.type, 'Model.BadResponse');
  assert.equal((await getSession(stack.sql, id))?.status, 'failed', 'the index is not left running');
  assert.deepEqual(await sessionContainers(docker, id), [], 'the container was torn down');
});

test('8,000 tool calls in one turn: the first ones run, the rest are dropped and the model is told', { timeout: 300_000 }, async () => {
  const calls = Array.from({ length: 8000 }, (_, i) => shell(`echo ${i}`));
  const { id, events } = await survive('many-calls', [{ toolCalls: calls }]);
  const rs = results(events);
  assert.equal(rs.length, MAX_TOOL_CALLS_PER_TURN);
  assert.equal(rs[0]?.output, '0\n');
  assert.match(rs.at(-1)?.output ?? '', new RegExp(`made 8000 tool calls; only the first ${MAX_TOOL_CALLS_PER_TURN} ran, the other ${8000 - MAX_TOOL_CALLS_PER_TURN} were dropped`));
  assert.equal(eventsOfType(events, 'model.call')[0]?.data.droppedCalls, 8000 - MAX_TOOL_CALLS_PER_TURN);
  await assertHistoryBounded(id);
});

test('a transcript past 2 MB (model text and outputs)', { timeout: 180_000 }, async () => {
  const text = 'thinking '.repeat(300_000); // 2.7 MB of model text in a turn that goes on
  const { id, events } = await survive('transcript', [
    { text, toolCalls: [shell('head -c 1500000 /dev/zero | tr "\\0" a')] },
    { toolCalls: [shell('head -c 1500000 /dev/zero | tr "\\0" b')] },
  ]);
  const turn = eventsOfType(events, 'model.call')[0];
  assert.equal(turn?.data.textRef?.bytes, text.length, 'the long text is kept whole by reference');
  const total = text.length + results(events).reduce((n, r) => n + (r.outputRef?.bytes ?? r.output.length), 0);
  assert.ok(total > 4 * 1024 * 1024, `the transcript is ${total} bytes`);
  await assertHistoryBounded(id);
});

test('output floods: 512 MB of lines and one 256 MB line are capped', { timeout: 300_000 }, async () => {
  const { events } = await survive('flood', [
    { toolCalls: [shell('yes "flood line" | head -c 536870912; echo end', { timeoutSec: 240 })] },
    { toolCalls: [shell('head -c 268435456 /dev/zero | tr "\\0" z; echo', { timeoutSec: 240 })] },
  ]);
  for (const r of results(events)) {
    assert.ok(r.ok, r.output.slice(0, 200));
    assert.ok(r.output.length <= 1024, 'the event holds a preview');
    assert.ok(r.outputRef, 'the output is stored by reference');
    assert.ok((r.outputRef?.bytes ?? 0) <= OUTPUT_STORE_CAP + 1024, `stored ${r.outputRef?.bytes} bytes, within the cap`);
    assert.ok((r.outputRef?.cutBytes ?? 0) > 200 * 1024 * 1024, 'and says how much was cut');
    const stored = (await readBlob(stack.blobs, r.outputRef!.sha)).toString('utf8');
    assert.match(stored, /cut/i);
  }
  // What the model received for each: capped at the output limit (16,000 characters and a note).
  const bodies = llm.requests.map((r) => r.body as { messages: Array<{ role: string; content: unknown }> });
  const toolMessages = bodies.at(-1)?.messages.filter((m) => m.role === 'tool') ?? [];
  assert.ok(toolMessages.length >= 2);
  for (const m of toolMessages.slice(0, 2)) assert.ok(String(m.content).length <= 16_500, `the model got ${String(m.content).length} characters`);
});

test('memory past the limit: the command is killed, the executor is not', { timeout: 180_000 }, async () => {
  const { events } = await survive(
    'memory',
    [{ toolCalls: [shell('python3 -c "a = bytearray(600 * 1024 * 1024); a[::4096] = b\'x\' * len(a[::4096]); print(len(a))"')] }],
    { memoryMb: 256 },
  );
  const [r] = results(events);
  assert.equal(r?.ok, false);
  if (isGvisor(testRuntime())) {
    // gVisor differs (docs/security.md): its kernel has no OOM killer of its own, the container's memory cgroup on
    // the host holds gVisor's kernel too, and the host's OOM killer stops it: the container is lost. The call gets
    // a clear error result, the sandbox is restored from its last snapshot, and the session carries on (survive).
    assert.match(r?.output ?? '', /The sandbox was lost \d+ times? while running this call/, r?.output);
    assert.ok(eventsOfType(events, 'sandbox.restored').length >= 1, 'the lost container was restored');
    return;
  }
  assert.equal(r?.exitCode, 137, `killed by SIGKILL (the OOM killer): ${r?.output}`);
  assert.equal(eventsOfType(events, 'sandbox.restored').length, 0, 'the container was not lost');
});

test('a process that ignores SIGTERM is killed at the timeout', { timeout: 120_000 }, async () => {
  const { events } = await survive('sigterm', [{ toolCalls: [shell("trap '' TERM; sh -c \"trap '' TERM; sleep 600\" & sleep 600", { timeoutSec: 3 })] }]);
  const [r] = results(events);
  assert.equal(r?.ok, false);
  assert.equal(r?.error, 'Timeout', r?.output);
  assert.ok((r?.durationMs ?? Infinity) < 30_000, `returned in ${r?.durationMs} ms`);
});

/** Every run's history stays far below Temporal's limits. */
async function assertHistoryBounded(id: string): Promise<void> {
  const started = await firstEvent(stack.sql, id, 'session.started');
  for (const run of await sessionHistories(stack.client.temporal, id, started?.data.workflowRunId ?? '')) {
    assert.ok(historyBytes(run.history) < 2 * 1024 * 1024, `run ${run.runId}: ${historyBytes(run.history)} bytes of history`);
  }
}
