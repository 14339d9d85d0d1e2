/** The model response guard: nesting counted through strings, and bodies past the limits refused before parsing. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { bracketDepth, guardedFetch, guardedStream } from '../../activities/model/response-guard';
import { MAX_MODEL_RESPONSE_BYTES, MAX_MODEL_RESPONSE_DEPTH } from '../../common/defaults';

test('bracketDepth counts [ and { inside strings too (tool arguments arrive as text), and stops early', () => {
  assert.equal(bracketDepth('{"a": [1, {"b": 2}]}'), 3);
  assert.equal(bracketDepth('{"arguments": "{\\"command\\": [[[]]]}"}'), 5);
  assert.equal(bracketDepth('no brackets'), 0);
  assert.equal(bracketDepth(']]]{'), 1, 'stray closers do not go negative');
  assert.equal(bracketDepth('['.repeat(1_000_000), 10), 11);
});

const served = (body: string, status = 200): typeof fetch => async () => new Response(body, { status });

async function refused(p: Promise<unknown>): Promise<ApplicationFailure> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ApplicationFailure, String(err));
    return err;
  }
  assert.fail('expected a refusal');
}

test('guardedFetch passes ordinary bodies and error responses through unchanged', async () => {
  const body = JSON.stringify({ choices: [{ message: { content: 'hi' } }] });
  assert.equal(await (await guardedFetch(served(body), 'm')('http://x')).text(), body);
  const deepError = '['.repeat(MAX_MODEL_RESPONSE_DEPTH + 5);
  assert.equal((await guardedFetch(served(deepError, 500), 'm')('http://x')).status, 500, 'errors are the SDK error handling’s');
});

test('guardedFetch refuses, not retryably, a body nested past the limit or larger than the limit', async () => {
  const deep = await refused(guardedFetch(served(`{"a": "${'['.repeat(MAX_MODEL_RESPONSE_DEPTH + 1)}"}`), 'openai:m')('http://x'));
  assert.equal(deep.type, 'Model.BadResponse');
  assert.equal(deep.nonRetryable, true);
  assert.match(deep.message, /openai:m sent a response nested deeper than 1000 levels/);
  const big = await refused(guardedFetch(served('x'.repeat(MAX_MODEL_RESPONSE_BYTES + 1)), 'm')('http://x'));
  assert.match(big.message, /over 67108864 bytes/);
});

/** A text/event-stream response made of `chunks`, each its own read; `pulled` counts the reads the guard made. */
function sseServed(chunks: string[], pulled: { n: number } = { n: 0 }): typeof fetch {
  return async () => {
    const enc = new TextEncoder();
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        pulled.n++;
        if (i < chunks.length) c.enqueue(enc.encode(chunks[i++]));
        else c.close();
      },
    });
    return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
  };
}

async function readAll(res: Response): Promise<string[]> {
  const out: string[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return out;
    out.push(value);
  }
}

test('a streamed body passes through chunk by chunk, not buffered', async () => {
  const chunks = ['data: {"a": "x"}\n\n', 'data: {"b": "[[[["}\n\n', 'data: [DONE]\n\n'];
  const res = await guardedFetch(sseServed(chunks), 'm')('http://x');
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  assert.equal((await reader.read()).value, chunks[0], 'the first chunk is readable on its own');
  await reader.cancel();
  assert.deepEqual(await readAll(await guardedFetch(sseServed(chunks), 'm')('http://x')), chunks);
});

test('a streamed body errors, not retryably, once its nesting adds up past the limit across events', async () => {
  // Tool arguments arrive in pieces: no one event is deep, together they are.
  const half = Math.ceil(MAX_MODEL_RESPONSE_DEPTH / 2) + 1;
  const piece = `data: {"delta": {"arguments": "${'['.repeat(half)}"}}\n\n`;
  const pulled = { n: 0 };
  const res = await guardedFetch(sseServed([piece, piece, piece, piece], pulled), 'openai:m')('http://x');
  const reader = res.body!.getReader();
  assert.ok(!(await reader.read()).done, 'the first event is passed');
  const deep = await refused(reader.read());
  assert.equal(deep.type, 'Model.BadResponse');
  assert.equal(deep.nonRetryable, true);
  assert.match(deep.message, /openai:m sent a response nested deeper than 1000 levels/);
  assert.ok(pulled.n <= 3, `the source stops being read (${pulled.n} reads)`);
});

test('a streamed body errors once its bytes pass the limit', async () => {
  const enc = new TextEncoder();
  const src = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < 5; i++) c.enqueue(enc.encode('x'.repeat(40)));
      c.close();
    },
  });
  const reader = guardedStream(src, 'm', { bytes: 100, depth: 10 }).getReader();
  assert.equal((await reader.read()).value?.byteLength, 40);
  assert.equal((await reader.read()).value?.byteLength, 40);
  assert.match((await refused(reader.read())).message, /m sent a response over 100 bytes/);
});
