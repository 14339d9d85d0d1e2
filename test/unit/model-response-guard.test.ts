/** The model response guard: nesting counted through strings, and bodies past the limits refused before parsing. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { bracketDepth, guardedFetch } from '../../activities/model/response-guard';
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
