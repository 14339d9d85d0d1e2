/**
 * Model text as it is generated: a real AI SDK provider (openai-compatible) streaming from a local
 * fake of the Chat Completions API, through the real worker, Postgres NOTIFY, `keel serve`'s SSE
 * route and `keel tail` in a child process. The fake holds its last chunk (finish and usage) until
 * both clients have shown the whole text, so what they saw was live, not read back afterwards.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import type { ModelDelta } from '../../common/deltas';
import { getEvents } from '../../store';
import { startApi, type TestApi } from '../helpers/api';
import { ensureSandboxImage, uniqueId } from '../helpers/env';
import { FakeLlmServer } from '../helpers/fake-llm-server';
import { openSse } from '../helpers/sse';
import { startStack, type Stack } from '../helpers/stack';

let stack: Stack;
let api: TestApi;
let llm: FakeLlmServer;
let key: string;

before(async () => {
  await ensureSandboxImage(new Docker());
  llm = await FakeLlmServer.start();
  // The worker's Anthropic endpoint is the fake too (a hosted provider takes its base URL from the worker only).
  stack = await startStack('deltas-host', { ANTHROPIC_BASE_URL: llm.url, ANTHROPIC_API_KEY: 'sk-ant-test-deltas' });
  api = await startApi(stack);
  key = await api.key(uniqueId('tenant-deltas'));
});

after(async () => {
  await api?.stop();
  await stack?.stop();
  await llm?.close();
});

async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every string inside the payloads of a workflow history, decoded. */
function payloadTexts(value: unknown, out: string[] = []): string[] {
  if (value instanceof Uint8Array) out.push(Buffer.from(value).toString('utf8'));
  else if (Array.isArray(value)) for (const v of value) payloadTexts(v, out);
  else if (value && typeof value === 'object') for (const v of Object.values(value)) payloadTexts(v, out);
  return out;
}

test('model text reaches an SSE client and keel tail while the call runs; the model.call event replaces it; no delta in history', { timeout: 180_000 }, async () => {
  const chunks = ['Hello ', 'from ', 'a streaming ', 'model.'];
  const whole = chunks.join('');
  let start!: () => void;
  let finish!: () => void;
  // Turn 1 runs a command, so `keel tail` prints a line once it follows the session; turn 2 streams,
  // held before its text (until tail follows) and before its end (until both clients showed the text).
  llm.enqueue(
    { toolCalls: [{ name: 'shell', args: { command: 'echo step-one' } }] },
    { textChunks: chunks, holdBeforeStart: new Promise<void>((r) => (start = r)), holdBeforeEnd: new Promise<void>((r) => (finish = r)) },
  );

  const id = uniqueId('deltas');
  const started = await api.call(key, 'POST', '/sessions', { id, task: 'say hello, streamed', model: { provider: 'openai-compatible', model: 'fake-stream', baseURL: llm.url } });
  assert.equal(started.status, 201, JSON.stringify(started.body));

  const messages: Array<{ event: string; id: string | undefined; data: string }> = [];
  let ended = false;
  const sse = await openSse(`${api.url}/sessions/${id}/stream`, { authorization: `Bearer ${key}` }, (m) => {
    if (m.event === 'end') ended = true;
    messages.push({ event: m.event ?? 'message', id: m.id, data: m.data });
  });
  assert.equal(sse.status, 200);

  let tailOut = '';
  let tailErr = '';
  const tail = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '../helpers/cli-entry.ts'), 'tail', id], { env: { ...process.env, ...stack.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  tail.stdout.on('data', (d) => (tailOut += d));
  tail.stderr.on('data', (d) => (tailErr += d));
  const tailDone = new Promise<number>((resolve) => tail.on('close', (code) => resolve(code ?? -1)));
  const deltas = () => messages.filter((m) => m.event === 'delta').map((m) => JSON.parse(m.data) as ModelDelta);

  let recordedWhileHeld: number;
  try {
    await until(`keel tail to follow (stdout: ${JSON.stringify(tailOut)}, stderr: ${JSON.stringify(tailErr)})`, () => tailOut.includes('step-one') && llm.requests.length === 2 && messages.some((m) => m.id), 90_000);
    start();
    await until('the whole text as deltas on the SSE stream', () => deltas().map((d) => d.text).join('') === whole);
    await until(`keel tail to show the text (stdout: ${JSON.stringify(tailOut)})`, () => tailOut.includes(`  ~ ${whole}`));
    recordedWhileHeld = (await getEvents(stack.sql, id, { types: ['model.call'] })).length;
  } finally {
    start();
    finish();
  }
  assert.equal(recordedWhileHeld, 1, 'both clients showed the text while the second model call was still open');
  await sse.closed;
  assert.ok(ended, 'the stream ends');
  assert.equal(await tailDone, 0, tailErr);

  // The SSE stream: deltas carry no id, so Last-Event-ID counts events only, and they come before the event that replaces them.
  const events = await getEvents(stack.sql, id);
  const withId = messages.filter((m) => m.id !== undefined);
  assert.deepEqual(withId.map((m) => Number(m.id)), events.map((e) => e.seq), 'every event once, in order, ids = seqs');
  assert.ok(messages.filter((m) => m.event === 'delta').every((m) => m.id === undefined));
  const turn = events.filter((e) => e.type === 'model.call').at(-1);
  assert.ok(turn?.type === 'model.call');
  assert.equal(turn.data.text, whole, 'the final text is the record');
  const ds = deltas();
  assert.ok(ds.every((d) => d.sessionId === id && d.step === turn.data.step && d.attempt === 1 && d.afterSeq < turn.seq), JSON.stringify(ds));
  assert.equal(turn.data.step, 2);
  assert.deepEqual(ds.map((d) => d.offset), ds.map((_, i) => ds.slice(0, i).reduce((n, p) => n + p.text.length, 0)), 'offsets place each piece');
  const lastDelta = messages.map((m) => m.event).lastIndexOf('delta');
  const turnAt = messages.findIndex((m) => m.id === String(turn.seq));
  assert.ok(lastDelta < turnAt, 'the deltas come before the model.call event');

  // keel tail: the text on a `~` line, closed by the turn's event (the final answer is not printed twice).
  assert.ok(tailOut.includes(`  ~ ${whole}\n`), tailOut);
  assert.equal(tailOut.split(whole).length - 1, 1, tailOut);

  // Temporal history: the turn's text is there (the activity's result, the recorded event), no delta is.
  const history = await stack.client.temporal.workflow.getHandle(id).fetchHistory();
  const texts = payloadTexts(history);
  assert.ok(texts.some((t) => t.includes(whole)), 'the history holds the final text');
  assert.ok(!texts.some((t) => t.includes('"offset"') || t.includes('"afterSeq"')), 'no delta in the history');
  const all = texts.join('\n');
  assert.equal(all.split(chunks[0]!).length, all.split(whole).length, 'every "Hello " in the history is part of the whole text');
  assert.equal(events.filter((e) => (e.type as string).includes('delta')).length, 0, 'no delta in the event log');
});

test('anthropic: the Messages API stream (text_delta events) reaches the SSE client while the call is open', { timeout: 120_000 }, async () => {
  llm.reset();
  const chunks = ['Claude-shaped ', 'text, ', 'streamed.'];
  let start!: () => void;
  let finish!: () => void;
  llm.enqueue({ textChunks: chunks, holdBeforeStart: new Promise<void>((r) => (start = r)), holdBeforeEnd: new Promise<void>((r) => (finish = r)) });
  const id = uniqueId('deltas-anthropic');
  const started = await api.call(key, 'POST', '/sessions', { id, task: 'stream, anthropic', model: { provider: 'anthropic', model: 'claude-fake' } });
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const seen: ModelDelta[] = [];
  let events = 0;
  const sse = await openSse(`${api.url}/sessions/${id}/stream`, { authorization: `Bearer ${key}` }, (m) => {
    if (m.event === 'delta') seen.push(JSON.parse(m.data) as ModelDelta);
    else if (m.id) events++;
  });
  let recordedWhileHeld: number;
  try {
    // An event on the stream means it is subscribed (deltas sent before that are not resent).
    await until('the model call, and the stream following', () => llm.requests.length === 1 && events > 0);
    assert.equal(llm.last().api, 'anthropic');
    assert.equal(llm.last().body.stream, true);
    start();
    await until('the whole text as deltas', () => seen.map((d) => d.text).join('') === chunks.join(''));
    recordedWhileHeld = (await getEvents(stack.sql, id, { types: ['model.call'] })).length;
  } finally {
    start();
    finish();
  }
  assert.equal(recordedWhileHeld, 0);
  await sse.closed;
  const turn = (await getEvents(stack.sql, id, { types: ['model.call'] }))[0];
  assert.ok(turn?.type === 'model.call');
  assert.equal(turn.data.text, chunks.join(''));
  assert.deepEqual(turn.data.usage, { inputTokens: 11, outputTokens: 7 }, 'usage from message_start and message_delta');
});
