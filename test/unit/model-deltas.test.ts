/** Model text deltas: publishing (coalesced, cut under the NOTIFY limit, in order, best effort), placing them (LiveText), the terminal view. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DeltaPublisher, MAX_DELTA_CHARS } from '../../activities/model/deltas';
import { livePrinter } from '../../cli/live-text';
import { LiveText, parseDelta, type ModelDelta } from '../../common/deltas';
import type { EventRow } from '../../common/events';

const call = { sessionId: 's-1', step: 3, afterSeq: 20, attempt: 1 };
const delta = (offset: number, text: string, over: Partial<ModelDelta> = {}): ModelDelta => ({ ...call, offset, text, ...over });

test('DeltaPublisher coalesces pieces into one NOTIFY per interval, in order, with offsets', async () => {
  const sent: ModelDelta[] = [];
  const p = new DeltaPublisher(async (payload) => void sent.push(parseDelta(payload)!), call, 30);
  p.push('Hel');
  p.push('lo ');
  assert.equal(sent.length, 0, 'nothing before the interval');
  await new Promise((r) => setTimeout(r, 80));
  assert.deepEqual(sent, [delta(0, 'Hello ')]);
  p.push('world');
  await p.flush();
  assert.deepEqual(sent, [delta(0, 'Hello '), delta(6, 'world')], 'flush sends what is pending at once');
});

test('DeltaPublisher cuts long text under the 8000-byte NOTIFY limit, never inside a surrogate pair', async () => {
  const payloads: string[] = [];
  const p = new DeltaPublisher(async (payload) => void payloads.push(payload), call, 1_000);
  const text = `${'\u0001'.repeat(MAX_DELTA_CHARS - 1)}😀${'x'.repeat(2500)}`;
  p.push(text);
  await p.flush();
  assert.ok(payloads.length >= 3);
  for (const pl of payloads) assert.ok(Buffer.byteLength(pl) < 8000, `payload of ${Buffer.byteLength(pl)} bytes`);
  const parts = payloads.map((pl) => parseDelta(pl)!);
  assert.equal(parts.map((d) => d.text).join(''), text);
  assert.ok(!parts[0]!.text.endsWith('\uD83D'), 'the pair is not split');
  let at = 0;
  for (const d of parts) {
    assert.equal(d.offset, at);
    at += d.text.length;
  }
});

test('DeltaPublisher sends one at a time, in order, and stops after a failed NOTIFY without failing the caller', async () => {
  const sent: string[] = [];
  let inFlight = 0;
  let fail = false;
  const p = new DeltaPublisher(async (payload) => {
    assert.equal(inFlight++, 0, 'sends never overlap');
    await new Promise((r) => setTimeout(r, 5));
    inFlight--;
    if (fail) throw new Error('connection lost');
    sent.push(parseDelta(payload)!.text);
  }, call, 1_000);
  p.push('a'.repeat(MAX_DELTA_CHARS));
  p.push('b'.repeat(MAX_DELTA_CHARS));
  await p.flush();
  assert.deepEqual(sent, ['a'.repeat(MAX_DELTA_CHARS), 'b'.repeat(MAX_DELTA_CHARS)]);
  fail = true;
  p.push('c');
  await p.flush();
  fail = false;
  p.push('d');
  await p.flush();
  assert.equal(sent.length, 2, 'nothing more after a failure');
});

test('parseDelta refuses what is not a delta', () => {
  assert.deepEqual(parseDelta(JSON.stringify(delta(0, 'x'))), delta(0, 'x'));
  assert.equal(parseDelta('not json'), undefined);
  assert.equal(parseDelta(JSON.stringify({ ...delta(0, 'x'), offset: -1 })), undefined);
  assert.equal(parseDelta(JSON.stringify({ ...delta(0, 'x'), step: '1' })), undefined);
});

test('LiveText places deltas by offset: repeats cut, gaps marked, older attempts and ended calls ignored', () => {
  const live = new LiveText();
  assert.equal(live.add(delta(0, 'Hello ')), 'Hello ');
  assert.equal(live.add(delta(0, 'Hello ')), '', 'a repeat adds nothing');
  assert.equal(live.add(delta(3, 'lo world')), 'world', 'an overlap adds only the new part');
  assert.equal(live.add(delta(20, '!')), '…!', 'a gap is marked');
  assert.equal(live.current, 'Hello world…!');
  assert.equal(live.add(delta(0, 'Again', { attempt: 2 })), 'Again', 'a retry starts over');
  assert.equal(live.add(delta(5, ' late', { attempt: 1 })), '', 'the older attempt is ignored');
  assert.equal(live.ended(25), 'Again', 'the model.call event ends it');
  assert.equal(live.add(delta(5, ' too late', { attempt: 2 })), '', 'a delta of an ended call is ignored');
  assert.equal(live.add(delta(0, 'Next', { afterSeq: 30, step: 4 })), 'Next', 'the next call shows');
  assert.equal(new LiveText().add(delta(40, 'joined late')), '…joined late');
});

test('livePrinter streams text on a `~` line; the model.call event closes it and is not printed twice', () => {
  let out = '';
  const shown: EventRow[] = [];
  const p = livePrinter((e) => shown.push(e), (s) => (out += s));
  p.onDelta(delta(0, 'Looking \u001b[2J'));
  p.onDelta(delta(12, 'around.'));
  assert.equal(out, '  ~ Looking \\x1b[2Jaround.', 'control characters are shown as escapes');
  const turn = (text: string): EventRow => ({ sessionId: 's-1', seq: 21, at: new Date(), type: 'model.call', data: { step: 3, text, toolCalls: [], finishReason: 'stop', usage: { inputTokens: 1, outputTokens: 1 }, durationMs: 1 } }) as EventRow;
  p.onEvent(turn('Looking \u001b[2Jaround.'));
  assert.equal(out.endsWith('\n'), true);
  assert.equal(shown.length, 1);
  assert.equal(shown[0]?.type === 'model.call' && shown[0].data.text, undefined, 'the text was on screen already');
  const q = livePrinter((e) => shown.push(e), (s) => (out += s));
  q.onDelta(delta(5, 'middle'));
  q.onEvent(turn('start middle end'));
  assert.equal((shown.at(-1) as Extract<EventRow, { type: 'model.call' }>).data.text, 'start middle end', 'a partial view is followed by the record');
});

test('flush waits for a slow NOTIFY only so long: a slow database delays a preview, never the model call', async () => {
  const p = new DeltaPublisher(() => new Promise(() => undefined), call, 1_000);
  p.push('stuck');
  const t0 = Date.now();
  await p.flush(100);
  assert.ok(Date.now() - t0 < 1_000);
});
