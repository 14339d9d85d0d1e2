/**
 * Live event delivery from Postgres LISTEN/NOTIFY, shared by `keel run`, `keel tail` and the
 * API's Server-Sent Events: every event commit notifies `keel_events` with `<sessionId>:<maxSeq>`
 * (store/events.ts), so nothing polls.
 *
 * Why no event is missed or delivered twice: one LISTEN connection per hub, one feed per watched
 * session. A feed's pump reads the session's events after the lowest cursor of its subscribers
 * and hands each subscriber only those past its own cursor, in seq order. A pump runs when a
 * subscriber joins (which is its catch-up), on every notification for the session, and for every
 * feed when the LISTEN connection comes back after a drop (notifications sent meanwhile are
 * lost); pumps of one feed never overlap, and a trigger during a pump runs one more. A
 * notification is sent after its commit, so a pump started after it reads that event; any event
 * committed before a subscriber joined is read by the pump its joining starts.
 */
import type { EventRow } from '../common/events';
import type { Sql } from './db';
import { EVENTS_CHANNEL } from './events';
import { getEvents } from './queries';

/** One subscriber's stream; `close` stops it (idempotent). */
export interface Subscription {
  /** Resolves once every event committed before the call has been handed to the subscriber. */
  flush(): Promise<void>;
  close(): void;
}

interface Subscriber {
  cursor: number;
  onEvent: (e: EventRow) => void;
  onError: (err: unknown) => void;
}

class Feed {
  readonly subscribers = new Set<Subscriber>();
  private pumping: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly sql: Sql,
    readonly sessionId: string,
  ) {}

  /** Pump now, or once more after the running pump; resolves when a pump that began after this call is done. */
  trigger(): Promise<void> {
    this.again = true;
    // Started in a microtask, so `pumping` is set before `run` can clear it.
    this.pumping ??= Promise.resolve().then(() => this.run());
    return this.pumping;
  }

  /** The seq every subscriber has already seen (a notification up to it needs no read). */
  lowestCursor(): number {
    let low = Infinity;
    for (const s of this.subscribers) low = Math.min(low, s.cursor);
    return low;
  }

  private async run(): Promise<void> {
    try {
      while (this.again && this.subscribers.size > 0) {
        this.again = false;
        const from = this.lowestCursor();
        let rows: EventRow[];
        try {
          rows = await getEvents(this.sql, this.sessionId, { afterSeq: from });
        } catch (err) {
          for (const s of this.subscribers) s.onError(err);
          return;
        }
        for (const s of [...this.subscribers]) {
          // One that joined during the read, behind `from`, would skip events: its join set `again`,
          // so the next round reads from its cursor.
          if (s.cursor < from) continue;
          for (const e of rows) {
            if (!this.subscribers.has(s)) break;
            if (e.seq <= s.cursor) continue;
            s.cursor = e.seq;
            s.onEvent(e);
          }
        }
      }
    } finally {
      // Cleared right after the last check of `again`, with no await between: a later trigger starts a new pump.
      this.pumping = undefined;
    }
  }
}

/**
 * Delivers each session's events, as they are committed, to any number of subscribers in this
 * process over one LISTEN connection. Create one per process (`new EventHub(sql)`), `close()` it
 * when done; the `sql` pool stays the caller's.
 */
export class EventHub {
  private readonly feeds = new Map<string, Feed>();
  private listening: Promise<{ unlisten(): Promise<void> }> | undefined;

  constructor(private readonly sql: Sql) {}

  /**
   * Hand `onEvent` every event of `sessionId` after `afterSeq` (0: from the first), in seq order,
   * once each: first those already recorded, then each as it commits, until `close()`. `onError`
   * hears a failed read (the subscription stays, and the next notification reads again).
   */
  async subscribe(
    sessionId: string,
    opts: { afterSeq?: number; onEvent: (e: EventRow) => void; onError?: (err: unknown) => void },
  ): Promise<Subscription> {
    await this.listen();
    let feed = this.feeds.get(sessionId);
    if (!feed) this.feeds.set(sessionId, (feed = new Feed(this.sql, sessionId)));
    const sub: Subscriber = { cursor: opts.afterSeq ?? 0, onEvent: opts.onEvent, onError: opts.onError ?? (() => undefined) };
    feed.subscribers.add(sub);
    void feed.trigger();
    const f = feed;
    return {
      flush: () => (f.subscribers.has(sub) ? f.trigger() : Promise.resolve()),
      close: () => {
        f.subscribers.delete(sub);
        if (f.subscribers.size === 0 && this.feeds.get(sessionId) === f) this.feeds.delete(sessionId);
      },
    };
  }

  /** Stop listening. Subscriptions get nothing more. */
  async close(): Promise<void> {
    this.feeds.clear();
    const l = this.listening;
    this.listening = undefined;
    if (l) await (await l).unlisten().catch(() => undefined);
  }

  private listen(): Promise<unknown> {
    this.listening ??= this.sql
      .listen(
        EVENTS_CHANNEL,
        (payload) => this.notified(payload),
        // Called again after a reconnect: whatever was notified while the connection was down is read now.
        () => {
          for (const f of this.feeds.values()) void f.trigger();
        },
      )
      .catch((err: unknown) => {
        this.listening = undefined;
        throw err;
      });
    return this.listening;
  }

  private notified(payload: string): void {
    const i = payload.lastIndexOf(':');
    const feed = this.feeds.get(payload.slice(0, i));
    if (feed && Number(payload.slice(i + 1)) > feed.lowestCursor()) void feed.trigger();
  }
}
