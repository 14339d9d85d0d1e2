/**
 * store/subscribe.ts on a real Postgres: subscribers at any cursor get every event after it
 * exactly once and in order while two writers append concurrently, and events committed while
 * the LISTEN connection is down are delivered when it comes back (no polling anywhere).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import type { EventRow, SessionEvent } from '../../common/events';
import type { ModelDelta } from '../../common/deltas';
import { appendEvents, DELTAS_CHANNEL, EventHub, getEvents, migrate, type Sql } from '../../store';
import { asSuperuser } from '../helpers/superuser';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://keel:keel@localhost:5432/keel_test';
const run = randomUUID().slice(0, 8);
const sid = (name: string) => `sub-${run}-${name}`;
// Its own application name, so the test can cut exactly its own LISTEN connection.
const APP_NAME = `keel-subscribe-test-${run}`;

let sql: Sql;
before(async () => {
  sql = postgres(DATABASE_URL, { max: 4, onnotice: () => undefined, connection: { application_name: APP_NAME } });
  await migrate(sql);
});
after(async () => {
  await sql.end({ timeout: 5 });
});

const toolCall = (seq: number): SessionEvent => ({ seq, type: 'tool.call', data: { step: seq, callId: `c${seq}`, name: 'shell', input: { command: `echo ${seq}` } } });

async function until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('EventHub', () => {
  test('subscribers at different cursors get every later event once, in order, while two writers append', async () => {
    const id = sid('many');
    const hub = new EventHub(sql);
    const writerB = postgres(DATABASE_URL, { max: 2, onnotice: () => undefined });
    try {
      await appendEvents(sql, id, [1, 2, 3, 4, 5].map(toolCall));
      const subs: Array<{ cursor: number; seen: number[]; sub: { close(): void } }> = [];
      for (const cursor of [0, 2, 5, 5, 0]) {
        const seen: number[] = [];
        subs.push({ cursor, seen, sub: await hub.subscribe(id, { afterSeq: cursor, onEvent: (e: EventRow) => seen.push(e.seq) }) });
      }
      // Two writers, interleaved batches of 1 to 3 events, 200 events in all.
      let next = 6;
      const batches: Array<{ writer: Sql; events: SessionEvent[] }> = [];
      while (next <= 205) {
        const n = Math.min(1 + (next % 3), 206 - next);
        batches.push({ writer: batches.length % 2 ? writerB : sql, events: Array.from({ length: n }, (_, i) => toolCall(next + i)) });
        next += n;
      }
      for (const b of batches) await appendEvents(b.writer, id, b.events);
      // A late subscriber joining in the middle of nothing still gets the whole tail.
      const late: number[] = [];
      const lateSub = await hub.subscribe(id, { afterSeq: 100, onEvent: (e) => late.push(e.seq) });
      await until(() => subs.every((s) => s.seen.at(-1) === 205) && late.at(-1) === 205, 'every subscriber to reach seq 205');
      for (const s of subs) assert.deepEqual(s.seen, Array.from({ length: 205 - s.cursor }, (_, i) => s.cursor + 1 + i), `cursor ${s.cursor}`);
      assert.deepEqual(late, Array.from({ length: 105 }, (_, i) => 101 + i));
      for (const s of subs) s.sub.close();
      lateSub.close();
      // A closed subscription hears nothing more.
      const before = subs[0]!.seen.length;
      await appendEvents(sql, id, [toolCall(206)]);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(subs[0]!.seen.length, before);
    } finally {
      await hub.close();
      await writerB.end({ timeout: 2 });
    }
  });

  test('flush resolves after every event committed before it was handed over', async () => {
    const id = sid('flush');
    const hub = new EventHub(sql);
    try {
      const seen: number[] = [];
      const sub = await hub.subscribe(id, { onEvent: (e) => seen.push(e.seq) });
      await appendEvents(sql, id, [1, 2, 3].map(toolCall));
      await sub.flush();
      assert.deepEqual(seen, [1, 2, 3]);
      sub.close();
    } finally {
      await hub.close();
    }
  });

  test('events committed while the LISTEN connection is cut are delivered when it reconnects', async () => {
    const id = sid('reconnect');
    const hub = new EventHub(sql);
    try {
      const seen: number[] = [];
      await hub.subscribe(id, { onEvent: (e) => seen.push(e.seq) });
      await appendEvents(sql, id, [toolCall(1)]);
      await until(() => seen.length === 1, 'the first event');
      const killed = asSuperuser('keel_test', `select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity where application_name = '${APP_NAME}' and query ilike 'listen%') k;`);
      assert.equal(killed.trim(), '1', 'exactly the hub\'s LISTEN connection was cut');
      await appendEvents(sql, id, [2, 3, 4].map(toolCall));
      await until(() => seen.length === 4, 'the events written while it was cut', 20_000);
      assert.deepEqual(seen, [1, 2, 3, 4]);
      await appendEvents(sql, id, [toolCall(5)]);
      await until(() => seen.length === 5, 'a live event after the reconnect');
      assert.deepEqual(seen, (await getEvents(sql, id)).map((e) => e.seq));
    } finally {
      await hub.close();
    }
  });

  test('model text deltas: handed to subscribers that ask, the text so far to one joining mid-call, nothing once the call ended', async () => {
    const id = sid('deltas');
    const other = sid('deltas-other');
    const hub = new EventHub(sql);
    const send = (sessionId: string, offset: number, text: string) =>
      sql.notify(DELTAS_CHANNEL, JSON.stringify({ sessionId, step: 1, afterSeq: 2, attempt: 1, offset, text } satisfies ModelDelta));
    try {
      await appendEvents(sql, id, [1, 2].map(toolCall));
      const a: ModelDelta[] = [];
      const aEvents: number[] = [];
      const subA = await hub.subscribe(id, { onEvent: (e) => aEvents.push(e.seq), onDelta: (d) => a.push(d) });
      const none: number[] = [];
      const plain = await hub.subscribe(id, { onEvent: (e) => none.push(e.seq) });
      await send(id, 0, 'Hello ');
      await send(other, 0, 'not this session');
      await send(id, 6, 'world');
      await until(() => a.length === 2, 'two deltas');
      assert.deepEqual(a.map((d) => [d.offset, d.text]), [[0, 'Hello '], [6, 'world']]);

      const b: ModelDelta[] = [];
      const subB = await hub.subscribe(id, { afterSeq: 2, onEvent: () => undefined, onDelta: (d) => b.push(d) });
      assert.deepEqual(b.map((d) => [d.offset, d.text]), [[0, 'Hello world']], 'a late joiner gets the text so far at once');
      await send(id, 11, '!');
      await until(() => a.length === 3 && b.length === 2, 'the next delta to both');

      // The call ends: its model.call event; a subscriber joining after that gets no text of it.
      await appendEvents(sql, id, [{ seq: 3, type: 'model.call', data: { step: 1, text: 'Hello world!', toolCalls: [], finishReason: 'stop', usage: { inputTokens: 1, outputTokens: 1 }, durationMs: 5 } }]);
      await until(() => aEvents.includes(3), 'the model.call event');
      await send(id, 12, ' (late)');
      const c: ModelDelta[] = [];
      const subC = await hub.subscribe(id, { afterSeq: 3, onEvent: () => undefined, onDelta: (d) => c.push(d) });
      const d: ModelDelta[] = [];
      const subD = await hub.subscribe(id, { onEvent: () => undefined, onDelta: (x) => d.push(x) });
      assert.deepEqual(d, [], 'no text of the ended call for one reading from the start: the hub saw the call end');
      subD.close();
      // A delta of the next call, notified after the late one: once it is here, the late one has been dealt with.
      await sql.notify(DELTAS_CHANNEL, JSON.stringify({ sessionId: id, step: 2, afterSeq: 3, attempt: 1, offset: 0, text: 'next' } satisfies ModelDelta));
      await until(() => a.length >= 4 && c.length >= 1, 'the next call\'s delta');
      assert.deepEqual(a.slice(3).map((x) => x.text), ['next'], 'a delta of a call whose model.call was handed over is dropped');
      assert.deepEqual(c.map((x) => x.text), ['next'], 'no stale text for a subscriber that joins after the call');
      assert.deepEqual(none, [1, 2, 3], 'a subscriber that did not ask gets events only');
      for (const x of [subA, plain, subB, subC]) x.close();
    } finally {
      await hub.close();
    }
  });
});
