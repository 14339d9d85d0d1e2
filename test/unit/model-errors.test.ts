import assert from 'node:assert/strict';
import { test } from 'node:test';
import { APICallError } from '@ai-sdk/provider';
import { ApplicationFailure } from '@temporalio/common';
import { RetryError } from 'ai';
import { classifyModelError, redact, retryAfterMs } from '../../activities/model/errors';

const SECRET = 'sk-live-abcdef123456';
const ctx = { label: 'openai:gpt-test', secrets: [SECRET] };

function apiError(statusCode: number | undefined, opts: { headers?: Record<string, string>; message?: string } = {}) {
  return new APICallError({
    message: opts.message ?? `status ${statusCode}`,
    url: 'http://x/v1/chat/completions',
    requestBodyValues: { messages: ['the whole transcript'] },
    statusCode,
    responseHeaders: opts.headers,
    isRetryable: statusCode === undefined || statusCode >= 500 || statusCode === 429,
  });
}

function classified(err: unknown): ApplicationFailure {
  const out = classifyModelError(err, ctx);
  assert.ok(out instanceof ApplicationFailure, `not an ApplicationFailure: ${String(out)}`);
  return out;
}

test('429 -> retryable Model.RateLimit with nextRetryDelay from retry-after seconds', () => {
  const f = classified(apiError(429, { headers: { 'retry-after': '12' } }));
  assert.equal(f.type, 'Model.RateLimit');
  assert.equal(f.nonRetryable, false);
  assert.equal(f.nextRetryDelay, 12_000);
});

test('429 without retry-after has no nextRetryDelay (the retry policy decides)', () => {
  const f = classified(apiError(429));
  assert.equal(f.type, 'Model.RateLimit');
  assert.equal(f.nextRetryDelay, undefined);
});

test('401 and 403 -> non-retryable Model.Auth', () => {
  for (const s of [401, 403]) {
    const f = classified(apiError(s));
    assert.equal(f.type, 'Model.Auth');
    assert.equal(f.nonRetryable, true);
  }
});

test('other 4xx -> non-retryable Model.BadRequest; 408 counts as a timeout', () => {
  for (const s of [400, 404, 413, 422]) {
    const f = classified(apiError(s));
    assert.equal(f.type, 'Model.BadRequest', `status ${s}`);
    assert.equal(f.nonRetryable, true);
  }
  assert.equal(classified(apiError(408)).type, 'Model.Unavailable');
});

test('5xx and network errors (no status) -> retryable Model.Unavailable', () => {
  for (const s of [500, 502, 503, 529, undefined]) {
    const f = classified(apiError(s));
    assert.equal(f.type, 'Model.Unavailable', `status ${s}`);
    assert.equal(f.nonRetryable, false);
  }
});

test('APICallError wrapped in a RetryError or a cause is still found', () => {
  const retry = new RetryError({ message: 'failed', reason: 'maxRetriesExceeded', errors: [apiError(500), apiError(401)] });
  assert.equal(classified(retry).type, 'Model.Auth');
  const wrapped = new Error('outer', { cause: apiError(429) });
  assert.equal(classified(wrapped).type, 'Model.RateLimit');
});

test('our own timeout -> retryable Model.Unavailable naming the limit', () => {
  const abort = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
  const out = classifyModelError(abort, { ...ctx, timedOutAfterMs: 1234 });
  assert.ok(out instanceof ApplicationFailure);
  assert.equal(out.type, 'Model.Unavailable');
  assert.match(out.message, /1234 ms/);
});

test('ApplicationFailures pass through; unknown errors are not disguised', () => {
  const af = ApplicationFailure.nonRetryable('out of turns', 'Model.ScriptExhausted');
  assert.equal(classifyModelError(af, ctx), af);
  const bug = new TypeError('x is undefined');
  assert.equal(classifyModelError(bug, ctx), bug);
});

test('secrets never reach the failure: message scrubbed, request body and cause not attached', () => {
  const f = classified(apiError(401, { message: `Incorrect API key provided: ${SECRET}.` }));
  assert.doesNotMatch(f.message, /sk-live/);
  assert.match(f.message, /\[redacted\]/);
  assert.equal(f.cause, undefined);
  assert.doesNotMatch(JSON.stringify(f.details), /transcript/);
  const other = classifyModelError(new Error(`boom ${SECRET}`), ctx);
  assert.ok(other instanceof Error);
  assert.doesNotMatch(other.message + String(other.stack), /sk-live/);
});

test('retryAfterMs: seconds, fractional seconds, retry-after-ms, HTTP date, junk', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  assert.equal(retryAfterMs({ 'retry-after': '3' }, now), 3000);
  assert.equal(retryAfterMs({ 'retry-after': '0.5' }, now), 500);
  assert.equal(retryAfterMs({ 'retry-after-ms': '250', 'retry-after': '9' }, now), 250);
  assert.equal(retryAfterMs({ 'Retry-After': '2' }, now), 2000);
  assert.equal(retryAfterMs({ 'retry-after': 'Wed, 01 Jan 2025 00:00:30 GMT' }, now), 30_000);
  assert.equal(retryAfterMs({ 'retry-after': 'Tue, 31 Dec 2024 23:00:00 GMT' }, now), 0);
  assert.equal(retryAfterMs({ 'retry-after': 'soon' }, now), undefined);
  assert.equal(retryAfterMs({}, now), undefined);
  assert.equal(retryAfterMs(undefined, now), undefined);
});

test('redact caps long messages', () => {
  assert.equal(redact('x'.repeat(2000), []).length, 503);
  assert.equal(redact(`a ${SECRET} b ${SECRET}`, [SECRET]), 'a [redacted] b [redacted]');
});
