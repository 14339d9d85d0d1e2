/**
 * Pure parts of `keel audit rerun`: which calls are rerun from which snapshot on
 * which image, which are skipped, how outputs are compared and steps classified.
 *
 *   node --import tsx --test test/unit/rerun-plan.test.ts
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { recordedCalls } from '../../audit';
import { classify, firstDifferingLines, withoutWorkflowNote, type Difference } from '../../audit/rerun-compare';
import type { EventRow, SessionEvent } from '../../common/events';
import type { SnapshotInfo } from '../../common/types';

const snap = (id: string): SnapshotInfo => ({ id, files: 1, bytes: 1, added: 1, modified: 0, removed: 0, changedBytes: 1, uploadedBytes: 1, durationMs: 1 });
const place = { containerId: 'c', hostId: 'h', generation: 1 };

function log(...events: Array<Omit<SessionEvent, 'seq'>>): EventRow[] {
  return events.map((e, i) => ({ ...e, seq: i + 1, sessionId: 's', at: new Date(0) }) as EventRow);
}

describe('recordedCalls', () => {
  const events = log(
    { type: 'sandbox.provisioned', data: { ...place, image: 'img:1' } },
    { type: 'tool.call', data: { step: 1, callId: 'a', name: 'shell', input: { command: 'echo a > a' } } },
    { type: 'tool.result', data: { step: 1, callId: 'a', name: 'shell', ok: true, output: '(no output)', exitCode: 0, durationMs: 3, snapshot: snap('s1') } },
    { type: 'tool.call', data: { step: 2, callId: 'b', name: 'read_file', input: { path: 'a' } } },
    { type: 'tool.result', data: { step: 2, callId: 'b', name: 'read_file', ok: true, output: 'a', durationMs: 1 } },
    { type: 'tool.call', data: { step: 2, callId: 'z', name: 'sleep', input: { seconds: 600 } } },
    { type: 'sandbox.snapshot', data: { ...snap('s2'), reason: 'suspend' } },
    { type: 'tool.result', data: { step: 2, callId: 'z', name: 'sleep', ok: true, output: 'Slept 600 s.' } },
    { type: 'sandbox.resumed', data: { ...place, generation: 2, image: 'img:2', snapshot: 's2' } },
    { type: 'tool.call', data: { step: 3, callId: 'c', name: 'shell', input: 'not json' } },
    { type: 'tool.result', data: { step: 3, callId: 'c', name: 'shell', ok: false, error: 'InvalidArguments', output: 'Invalid arguments' } },
    { type: 'tool.call', data: { step: 3, callId: 'd', name: 'shell', input: { command: 'sleep 100' } } },
    { type: 'tool.result', data: { step: 3, callId: 'd', name: 'shell', ok: false, error: 'Cancelled', output: 'cancelled' } },
    { type: 'tool.call', data: { step: 4, callId: 'e', name: 'shell', input: { command: 'true' } } },
  );
  const calls = recordedCalls(events);

  it('lists sandbox calls only, each with the snapshot before its call and the image it ran on', () => {
    assert.deepEqual(calls.map((c) => [c.callId, c.before, c.image]), [
      ['a', undefined, 'img:1'],
      ['b', 's1', 'img:1'],
      ['c', 's2', 'img:2'],
      ['d', 's2', 'img:2'],
      ['e', 's2', 'img:2'],
    ]);
  });

  it('skips calls that never reached a sandbox, interrupted ones and ones without a result', () => {
    assert.deepEqual(calls.map((c) => c.skip === undefined), [true, true, false, false, false]);
    assert.match(calls[2]?.skip ?? '', /never reached a sandbox/);
    assert.match(calls[3]?.skip ?? '', /workflow's own result \(Cancelled\)/);
    assert.match(calls[4]?.skip ?? '', /no result recorded/);
  });
});

describe('comparing', () => {
  it('names the first differing lines and the line counts', () => {
    assert.deepEqual(firstDifferingLines('a\nb\nc', 'a\nB\nc\nd'), ['line 2:', '- "b"', '+ "B"', 'line 4:', '- (no line)', '+ "d"', '3 lines recorded, 4 in the rerun']);
    assert.deepEqual(firstDifferingLines('same', 'same'), []);
  });

  it("removes only the workflow's note on dropped calls", () => {
    assert.equal(withoutWorkflowNote('out\n[Keel: this turn made 40 tool calls; only the first 32 ran, the other 8 were dropped]'), 'out');
    assert.equal(withoutWorkflowNote('out \n'), 'out \n', 'trailing whitespace is kept');
  });

  it('classifies: not reproduced on the original image is nondeterministic, never drift', () => {
    const d: Difference[] = [{ field: 'output', recorded: '1', rerun: '2', detail: [] }];
    assert.equal(classify([], []), 'match');
    assert.equal(classify([], undefined), 'match');
    assert.equal(classify([], d), 'drift');
    assert.equal(classify(d, d), 'nondeterministic');
    assert.equal(classify(d, []), 'nondeterministic');
  });
});
