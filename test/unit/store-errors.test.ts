import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { classifyStoreError } from '../../activities/store/errors';
import { migrations } from '../../store';

function withCode(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

function classify(err: unknown): unknown {
  try {
    classifyStoreError(err);
  } catch (e) {
    return e;
  }
  assert.fail('classifyStoreError returned');
}

for (const code of ['ECONNREFUSED', 'ENOTFOUND', 'CONNECT_TIMEOUT', 'CONNECTION_CLOSED', '57P01', '08006']) {
  test(`${code} becomes a retryable Store.Unavailable naming DATABASE_URL`, () => {
    const out = classify(withCode(`boom ${code}`, code));
    assert.ok(out instanceof ApplicationFailure);
    assert.equal(out.type, 'Store.Unavailable');
    assert.equal(out.nonRetryable, false);
    assert.match(out.message, /DATABASE_URL/);
    assert.match(out.message, new RegExp(code));
  });
}

test('other errors are rethrown unchanged', () => {
  const unique = withCode('duplicate key', '23505');
  assert.equal(classify(unique), unique);
  const plain = new TypeError('bug');
  assert.equal(classify(plain), plain);
  assert.equal(classify('a string'), 'a string');
});

test('migrations have unique, increasing versions starting at 1', () => {
  const versions = migrations.map((m) => m.version);
  assert.equal(versions[0], 1);
  for (let i = 1; i < versions.length; i++) assert.ok(versions[i]! > versions[i - 1]!, `version ${versions[i]} out of order`);
  assert.ok(migrations.every((m) => m.name.length > 0 && m.sql.trim().length > 0));
});

test('refused data (SQLSTATE 22xxx, 23xxx) becomes a non-retryable Store.BadData; a unique violation stays retryable', () => {
  for (const code of ['22021', '22P05', '23502', '23514']) {
    const out = classify(withCode('refused', code));
    assert.ok(out instanceof ApplicationFailure);
    assert.equal(out.type, 'Store.BadData', code);
    assert.equal(out.nonRetryable, true, code);
    assert.match(out.message, new RegExp(code));
  }
});
