/**
 * Model text as it is generated: ephemeral, never an event. The model activity publishes
 * deltas through Postgres NOTIFY (`keel_deltas`) while the call runs; the `model.call`
 * event that ends the call carries the whole text and replaces them. Nothing stores a
 * delta: a client that was not listening when one was sent does not get it. Pure code.
 */

/** Part of a running model call's text. */
export interface ModelDelta {
  sessionId: string;
  /** The session step of the model call: the `step` its `model.call` event will have. */
  step: number;
  /**
   * The seq of the last event committed before the call: the call's `model.call` event is the
   * first one after it. A client that has seen a `model.call` with a higher seq drops the delta.
   */
  afterSeq: number;
  /** The activity attempt (1 first): a retried call streams its text again from offset 0. */
  attempt: number;
  /** Where `text` starts in the call's text, in UTF-16 code units (JavaScript string indices). */
  offset: number;
  text: string;
}

const isInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** A delta parsed from its JSON, or undefined when it is not one. */
export function parseDelta(json: string): ModelDelta | undefined {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!v || typeof v !== 'object') return undefined;
  const d = v as Record<string, unknown>;
  if (typeof d.sessionId !== 'string' || typeof d.text !== 'string') return undefined;
  if (!isInt(d.step) || !isInt(d.afterSeq) || !isInt(d.attempt) || !isInt(d.offset)) return undefined;
  return { sessionId: d.sessionId, step: d.step, afterSeq: d.afterSeq, attempt: d.attempt, offset: d.offset, text: d.text };
}

/**
 * The live text of a session's running model call, built from its deltas in any order and
 * with repeats: a delta from an older attempt, or for a call a `model.call` event has already
 * ended, is ignored; text whose start was missed (a client joining mid-call, a lost
 * notification) is kept, the gap shown as `…`. Used by `keel tail` / `keel run`; the web
 * console has the same logic in its JS.
 */
export class LiveText {
  private key: { afterSeq: number; attempt: number } | undefined;
  private shown = '';
  /** How far into the call's text the deltas so far reach. */
  private end = 0;
  /** The highest seq of a `model.call` event seen. */
  private endedThrough = 0;

  /** Feed a delta; returns what it adds to the text shown ('' for nothing). */
  add(d: ModelDelta): string {
    if (d.afterSeq < this.endedThrough) return '';
    const k = this.key;
    if (!k || d.afterSeq > k.afterSeq || (d.afterSeq === k.afterSeq && d.attempt > k.attempt)) {
      this.key = { afterSeq: d.afterSeq, attempt: d.attempt };
      this.shown = '';
      this.end = 0;
    } else if (d.afterSeq < k.afterSeq || d.attempt < k.attempt) {
      return '';
    }
    let out = '';
    if (d.offset > this.end) {
      out = '…';
      this.end = d.offset;
    }
    out += d.text.slice(this.end - d.offset);
    this.end = Math.max(this.end, d.offset + d.text.length);
    this.shown += out;
    return out;
  }

  /** A `model.call` event with this seq ended the running call. Returns the text that was showing ('' for none). */
  ended(seq: number): string {
    this.endedThrough = Math.max(this.endedThrough, seq);
    if (!this.key || this.key.afterSeq >= seq) return '';
    const was = this.shown;
    this.key = undefined;
    this.shown = '';
    this.end = 0;
    return was;
  }

  /** The text shown so far. */
  get current(): string {
    return this.shown;
  }
}
