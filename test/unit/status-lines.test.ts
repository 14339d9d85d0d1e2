/** The status lines `keel run` prints between events: one per retry attempt, long work at 5 s and each doubling. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ActivityInFlight } from '../../client';
import { statusLines } from '../../cli/status';
import { formatProgress, progressOf } from '../../common/progress';

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

test('work that reports progress says how far it is, every 5 s while it moves', () => {
  const seen = new Map<string, number>();
  const snap = (ms: number, done: number): ActivityInFlight => ({
    activityId: '12',
    activity: 'snapshotSandbox',
    attempt: 1,
    running: true,
    startedAt: new Date(T - ms),
    progress: { phase: 'uploading', done, total: 500, bytesDone: done * 100_000, bytesTotal: 50_000_000 },
  });
  assert.deepEqual(statusLines([snap(3_000, 10)], seen, T), [], 'short work: silent');
  assert.deepEqual(statusLines([snap(5_100, 120)], seen, T), ['  … snapshot: uploading 120 of 500 files, 11 of 48 MB (5 s)']);
  assert.deepEqual(statusLines([snap(7_000, 200)], seen, T), [], 'not again within 5 s');
  assert.deepEqual(statusLines([snap(10_200, 200)], seen, T), ['  … snapshot: uploading 200 of 500 files, 19 of 48 MB (10 s)']);
  assert.deepEqual(statusLines([snap(16_000, 200)], seen, T), [], 'no news: nothing');
  const hashing: ActivityInFlight = { ...snap(6_000, 0), activityId: '13', progress: { phase: 'hashing', done: 0, total: 0 } };
  assert.deepEqual(statusLines([hashing], new Map(), T), ['  … snapshot: hashing (6 s)']);
});

test('progress read back from heartbeat details is checked, not trusted', () => {
  assert.deepEqual(progressOf({ requestId: 'r1', progress: { phase: 'restoring', done: 3, total: 9, bytesDone: 10, bytesTotal: 20 } }), { phase: 'restoring', done: 3, total: 9, bytesDone: 10, bytesTotal: 20 });
  assert.equal(progressOf({ requestId: 'r1' }), undefined);
  assert.equal(progressOf({ phase: 'x', done: -1, total: 2 }), undefined);
  assert.equal(progressOf('uploading'), undefined);
  assert.equal(formatProgress({ phase: 'restoring', done: 1, total: 2, bytesDone: 1_048_576, bytesTotal: 3_145_728 }), 'restoring 1 of 2 files, 1.0 of 3.0 MB');
});
