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
 * they are heard to subscribers that ask for them, never stored. So that a subscriber joining
 * mid-call (a reconnect, a page opened late) does not start from the middle, the hub keeps the
 * text so far of each running call it has heard (in memory, bounded) and hands it over as one
 * delta at offset 0 when such a subscriber joins; what was sent before the hub listened is not
 * known to it. One is dropped for a subscriber that has already been handed
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
  /** The seq of the last `model.call` event handed over (at first, where the subscriber starts): deltas of calls that began before it are not passed on. */
  modelCallSeq: number;
  onEvent: (e: EventRow) => void;
  onDelta: ((d: ModelDelta) => void) | undefined;
  onError: (err: unknown) => void;
}

/** Running calls whose text a hub keeps for subscribers that join mid-call, and how much of each. */
const RUNNING_CALLS = 1000;
const RUNNING_TEXT_CHARS = 64 * 1024; // at most ~128 MB for RUNNING_CALLS (UTF-16)
/** A call not heard from for this long is forgotten (it ended, or its worker died). */
const RUNNING_IDLE_MS = 10 * 60_000;

/** A session's running call's text so far (or its latest contiguous part), built from its deltas. */
interface RunningCall {
  delta: ModelDelta | undefined;
  /** The highest seq of a `model.call` event handed over: calls before it have ended, and late deltas of them are ignored. */
  endedThrough: number;
  heardAt: number;
}

/** `d` added to what is known of its call (`known`, possibly of an older call or attempt). */
function accumulate(known: ModelDelta | undefined, d: ModelDelta): ModelDelta {
  const same = known && known.afterSeq === d.afterSeq && known.attempt === d.attempt;
  if (!same) return known && (known.afterSeq > d.afterSeq || (known.afterSeq === d.afterSeq && known.attempt > d.attempt)) ? known : { ...d };
  const end = known.offset + known.text.length;
  // A gap (a lost notification): keep the latest part, which clients mark as such.
  if (d.offset > end) return { ...d };
  let text = known.text + d.text.slice(end - d.offset);
  let offset = known.offset;
  if (text.length > RUNNING_TEXT_CHARS) {
    offset += text.length - RUNNING_TEXT_CHARS;
    text = text.slice(-RUNNING_TEXT_CHARS);
  }
  return { ...known, offset, text };
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
  /** Per session, its running model call's text so far (insertion order: least recently heard first). */
  private readonly running = new Map<string, RunningCall>();

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
    const onEvent = (e: EventRow): void => {
      // The call this ends is no longer running.
      const r = e.type === 'model.call' ? this.running.get(sessionId) : undefined;
      if (r) {
        r.endedThrough = Math.max(r.endedThrough, e.seq);
        if (r.delta && r.delta.afterSeq < e.seq) r.delta = undefined;
      }
      opts.onEvent(e);
    };
    const sub: Subscriber = { cursor: opts.afterSeq ?? 0, modelCallSeq: opts.afterSeq ?? 0, onEvent, onDelta: opts.onDelta, onError: opts.onError ?? (() => undefined) };
    feed.subscribers.add(sub);
    // Joining mid-call: the text so far, as one delta. Not for a subscriber that has seen events
    // after the call began (they are its end); one that has not gets the model.call event after it.
    const sofar = this.running.get(sessionId);
    if (sub.onDelta && sofar?.delta && sofar.delta.afterSeq >= sub.cursor && Date.now() - sofar.heardAt < RUNNING_IDLE_MS) sub.onDelta(sofar.delta);
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
    this.running.clear();
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
    if (!d) return;
    const known = this.running.get(d.sessionId);
    this.running.delete(d.sessionId); // re-inserted last: the map stays in order of last heard
    const endedThrough = known?.endedThrough ?? 0;
    this.running.set(d.sessionId, { delta: d.afterSeq < endedThrough ? known?.delta : accumulate(known?.delta, d), endedThrough, heardAt: Date.now() });
    for (const [id, r] of this.running) {
      if (this.running.size <= RUNNING_CALLS && Date.now() - r.heardAt < RUNNING_IDLE_MS) break;
      this.running.delete(id);
    }
    const feed = this.feeds.get(d.sessionId);
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
