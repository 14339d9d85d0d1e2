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
 *
 * Model text deltas (`keel_deltas`, common/deltas.ts) are not events: they are handed on as
 * they are heard to subscribers that ask for them, never read back, so a subscriber gets only
 * those sent while it listens. One is dropped for a subscriber that has already been handed
 * the `model.call` event ending its call (a retried call's late delta, say). A model call
 * sends its last delta before it returns, and the `model.call` event commits after that, so a
 * subscriber hears a call's deltas before the event that ends it.
 */
import { parseDelta, type ModelDelta } from '../common/deltas';
import type { EventRow } from '../common/events';
import type { Sql } from './db';
import { DELTAS_CHANNEL, EVENTS_CHANNEL } from './events';
import { getEvents } from './queries';

/** One subscriber's stream; `close` stops it (idempotent). */
export interface Subscription {
  /** Resolves once every event committed before the call has been handed to the subscriber. */
  flush(): Promise<void>;
  close(): void;
}

interface Subscriber {
  cursor: number;
  /** The seq of the last `model.call` event handed over. */
  modelCallSeq: number;
  onEvent: (e: EventRow) => void;
  onDelta: ((d: ModelDelta) => void) | undefined;
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
            if (e.type === 'model.call') s.modelCallSeq = e.seq;
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
  private listeningDeltas: Promise<{ unlisten(): Promise<void> }> | undefined;

  constructor(private readonly sql: Sql) {}

  /**
   * Hand `onEvent` every event of `sessionId` after `afterSeq` (0: from the first), in seq order,
   * once each: first those already recorded, then each as it commits, until `close()`. `onError`
   * hears a failed read (the subscription stays, and the next notification reads again).
   * `onDelta`, when given, hears the session's model text deltas sent from now on (not stored:
   * none from before, none sent while the LISTEN connection was down).
   */
  async subscribe(
    sessionId: string,
    opts: { afterSeq?: number; onEvent: (e: EventRow) => void; onDelta?: (d: ModelDelta) => void; onError?: (err: unknown) => void },
  ): Promise<Subscription> {
    await this.listen();
    if (opts.onDelta) await this.listenDeltas();
    let feed = this.feeds.get(sessionId);
    if (!feed) this.feeds.set(sessionId, (feed = new Feed(this.sql, sessionId)));
    const sub: Subscriber = { cursor: opts.afterSeq ?? 0, modelCallSeq: 0, onEvent: opts.onEvent, onDelta: opts.onDelta, onError: opts.onError ?? (() => undefined) };
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
    for (const l of [this.listening, this.listeningDeltas]) if (l) await (await l).unlisten().catch(() => undefined);
    this.listening = undefined;
    this.listeningDeltas = undefined;
  }

  private listenDeltas(): Promise<unknown> {
    this.listeningDeltas ??= this.sql.listen(DELTAS_CHANNEL, (payload) => this.delta(payload)).catch((err: unknown) => {
      this.listeningDeltas = undefined;
      throw err;
    });
    return this.listeningDeltas;
  }

  private delta(payload: string): void {
    const d = parseDelta(payload);
    const feed = d && this.feeds.get(d.sessionId);
    if (!feed) return;
    for (const s of feed.subscribers) if (s.onDelta && d.afterSeq >= s.modelCallSeq) s.onDelta(d);
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
