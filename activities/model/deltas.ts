/**
 * Publishing a running model call's text as it arrives, through Postgres NOTIFY on
 * `keel_deltas` (store/subscribe.ts delivers it to `keel tail`, `keel run` and the API's
 * stream). Best effort by design: a delta is a preview, the `model.call` event is the record,
 * so a failed NOTIFY never fails the call (publishing stops for that call instead).
 *
 * Deltas are coalesced (one NOTIFY per `intervalMs` at most) and cut so each payload stays
 * well under Postgres's 8000-byte NOTIFY limit; sends are chained, so they commit, and
 * reach listeners, in order, and `flush` resolves after the last one (before the activity
 * returns, so before the `model.call` event's own notification).
 */
import type { ModelDelta } from '../../common/deltas';

/** Characters per NOTIFY: JSON escaping can make one character 6 bytes (`\u0001`); 1000 × 6 + the envelope < 8000. */
export const MAX_DELTA_CHARS = 1000;
/** Coalescing interval: at most this many NOTIFYs a second per model call is 1000 / 50 = 20. */
export const DELTA_INTERVAL_MS = 50;

/** The longest a finished model call waits for its last deltas to be sent. */
export const FLUSH_WAIT_MS = 2000;

export type Notify = (payload: string) => Promise<unknown>;

export class DeltaPublisher {
  private pending = '';
  private offset = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private chain: Promise<void> = Promise.resolve();
  private failed = false;

  constructor(
    private readonly notify: Notify,
    private readonly call: Omit<ModelDelta, 'offset' | 'text'>,
    private readonly intervalMs = DELTA_INTERVAL_MS,
  ) {}

  /** Text the model just produced. */
  push(text: string): void {
    if (this.failed || !text) return;
    this.pending += text;
    if (this.pending.length >= MAX_DELTA_CHARS) this.send();
    else this.timer ??= setTimeout(() => this.send(), this.intervalMs);
  }

  /**
   * Send what is pending; resolves when every delta so far has been sent (or given up on), or
   * after `waitMs` at most: a slow database delays a preview, never the model call.
   */
  flush(waitMs = FLUSH_WAIT_MS): Promise<void> {
    this.send();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)));
    return Promise.race([this.chain, late]).finally(() => clearTimeout(timer));
  }

  private send(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.pending.length > 0 && !this.failed) {
      let n = Math.min(MAX_DELTA_CHARS, this.pending.length);
      // Never split a surrogate pair: each half alone would not survive JSON and jsonb.
      if (n < this.pending.length && /[\uD800-\uDBFF]/.test(this.pending[n - 1] ?? '')) n--;
      const text = this.pending.slice(0, n);
      this.pending = this.pending.slice(n);
      const payload = JSON.stringify({ ...this.call, offset: this.offset, text } satisfies ModelDelta);
      this.offset += text.length;
      this.chain = this.chain.then(
        () => (this.failed ? undefined : this.notify(payload).then(() => undefined)),
      ).catch(() => {
        this.failed = true;
      });
    }
  }
}
