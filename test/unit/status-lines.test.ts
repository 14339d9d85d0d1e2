/** The status lines `keel run` prints between events: one per retry attempt, long work at 5 s and each doubling. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ActivityInFlight } from '../../client';
import { statusLines } from '../../cli/status';

const T = Date.parse('2026-12-05T10:00:00Z');
const retrying = (attempt: number, lastFailure = 'connect ECONNREFUSED 127.0.0.1:1'): ActivityInFlight => ({
  activityId: '6',
  activity: 'callModel',
  attempt,
  maximumAttempts: 8,
  running: false,
  lastFailure,
  nextAttemptAt: new Date(T + 4_000),
});

test('a retry is one line: what failed, which attempt, when the next is; each attempt is told once', () => {
  const seen = new Map<string, number>();
  assert.deepEqual(statusLines([retrying(3)], seen, T), ['  ↻ model call failed (attempt 2 of 8): connect ECONNREFUSED 127.0.0.1:1; next attempt in 4 s']);
  assert.deepEqual(statusLines([retrying(3)], seen, T + 1000), [], 'the same attempt again: nothing new');
  assert.equal(statusLines([retrying(4)], seen, T + 5000).length, 1, 'the next attempt is told');
});

test('a failure message is cut to one safe line', () => {
  const [line] = statusLines([retrying(2, `bad\x1b]0;title\x07 thing\nstack line 1\nstack line 2 ${'x'.repeat(500)}`)], new Map(), T);
  assert.ok(line);
  assert.ok(!line.includes('\n') && !line.includes('\x1b'), line);
  assert.ok(!line.includes('stack line'), line);
});

test('long work is told at 5 s, then at each doubling, per attempt', () => {
  const seen = new Map<string, number>();
  const running = (ms: number, attempt = 1): ActivityInFlight => ({ activityId: '9', activity: 'runTool', attempt, running: true, startedAt: new Date(T - ms) });
  assert.deepEqual(statusLines([running(3_000)], seen, T), [], 'short work: silent');
  assert.deepEqual(statusLines([running(5_200)], seen, T), ['  … tool call still running (5 s)']);
  assert.deepEqual(statusLines([running(8_000)], seen, T), []);
  assert.deepEqual(statusLines([running(10_500)], seen, T), ['  … tool call still running (11 s)']);
  assert.deepEqual(statusLines([running(6_000, 2)], seen, T), ['  … tool call still running (6 s, attempt 2)'], 'a new attempt starts over');
  assert.deepEqual(statusLines([{ ...running(60_000), activity: 'someNewActivity' }], new Map(), T), ['  … someNewActivity still running (60 s)'], 'unknown names are shown as they are');
});
