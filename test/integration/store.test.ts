/**
 * The store against a real Postgres (DATABASE_URL, default the local keel_test database).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import type { EventType, SessionEvent } from '../../common/events';
import { chargeTenant, connect, EVENTS_CHANNEL, getEvents, getSession, listSessions, migrate, migrations, setTenantLimits, tenantUsage, type Sql } from '../../store';
import { createStoreActivities } from '../../activities/store';
import { testOwnerUrl } from '../helpers/env';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://keel:keel@localhost:5432/keel_test';
/** The role that owns the tables (setup makes keel_owner); the workers' role above owns nothing. */
const OWNER_URL = testOwnerUrl();
const run = randomUUID().slice(0, 8);
const sid = (name: string) => `test-${run}-${name}`;

let sql: Sql;

before(async () => {
  sql = connect(DATABASE_URL);
  await migrate(sql);
});
after(async () => {
  await sql.end({ timeout: 5 });
});

/** Events with any payload: the store keeps what it is given (older rows have other shapes). */
type LooseEvent = { seq: number; type: EventType; data: object };
function looseStore() {
  const { recordEvents } = createStoreActivities({ sql });
  return { recordEvents: (a: { sessionId: string; events: LooseEvent[] }) => recordEvents(a as { sessionId: string; events: SessionEvent[] }) };
}

function started(task = 'do a thing'): SessionEvent {
  return { seq: 0, type: 'session.started', data: { task, model: 'scripted:demo', tenant: 'acme', maxSteps: 5, workflowRunId: 'run-1' } };
}

describe('migrate', () => {
  test('is idempotent: a second run applies nothing and records each version once', async () => {
    const again = await migrate(sql);
    assert.deepEqual(again, []);
    const rows = await sql<{ version: number; name: string }[]>`select version, name from schema_migrations order by version`;
    assert.deepEqual(
      rows.map((r) => r.version),
      migrations.map((m) => m.version),
    );
  });

  test('two workers migrating a fresh schema at once apply each migration exactly once', async () => {
    const schema = `keel_mig_${run.replace(/-/g, '')}`;
    const owner = connect(OWNER_URL);
    await owner.unsafe(`create schema ${schema}`);
    const opts = { connection: { search_path: schema } } as const;
    const postgres = (await import('postgres')).default;
    const a = postgres(OWNER_URL, { ...opts, max: 1, onnotice: () => {} });
    const b = postgres(OWNER_URL, { ...opts, max: 1, onnotice: () => {} });
    try {
      const [ra, rb] = await Promise.all([migrate(a), migrate(b)]);
      const all = [...ra, ...rb].sort();
      assert.deepEqual(all, migrations.map((m) => m.version).sort());
      const [{ n } = { n: -1 }] = await a<{ n: number }[]>`select count(*)::int as n from schema_migrations`;
      assert.equal(n, migrations.length);
      const [{ t } = { t: '' }] = await a<{ t: string }[]>`select to_regclass('events')::text as t`;
      assert.equal(t, 'events');
    } finally {
      await a.end({ timeout: 5 });
      await b.end({ timeout: 5 });
      await owner.unsafe(`drop schema ${schema} cascade`);
      await owner.end({ timeout: 2 });
    }
  });
});

describe('recordEvents', () => {
  test('writes events, and a retried duplicate write is ignored', async () => {
    const { recordEvents } = looseStore();
    const id = sid('dup');
    const events: LooseEvent[] = [
      started(),
      { seq: 1, type: 'model.call', data: { step: 1 } },
      { seq: 2, type: 'tool.call', data: { name: 'shell', input: { command: 'ls' } } },
    ];
    await recordEvents({ sessionId: id, events });
    await recordEvents({ sessionId: id, events });
    // A retry carrying the same seq with different data must not overwrite the first write.
    await recordEvents({ sessionId: id, events: [{ seq: 2, type: 'tool.call', data: { name: 'changed' } }] });
    const rows = await getEvents(sql, id);
    assert.equal(rows.length, 3);
    assert.deepEqual(rows[2]?.data, { name: 'shell', input: { command: 'ls' } });
  });

  test('session row follows started -> status -> ended', async () => {
    const { recordEvents } = looseStore();
    const id = sid('lifecycle');
    await recordEvents({ sessionId: id, events: [started('build it')] });
    let s = await getSession(sql, id);
    assert.ok(s);
    assert.equal(s.status, 'running');
    assert.equal(s.task, 'build it');
    assert.equal(s.tenant, 'acme');
    assert.equal(s.model, 'scripted:demo');
    assert.equal(s.workflowRunId, 'run-1');
    assert.equal(s.endedAt, null);

    await recordEvents({ sessionId: id, events: [{ seq: 1, type: 'session.status', data: { status: 'cancelled' } }] });
    s = await getSession(sql, id);
    assert.equal(s?.status, 'cancelled');
    assert.ok(s?.updatedAt instanceof Date);

    const result = { sessionId: id, status: 'completed', steps: 3, toolCalls: 2, usage: { inputTokens: 10, outputTokens: 5 } };
    await recordEvents({ sessionId: id, events: [{ seq: 2, type: 'session.ended', data: result }] });
    s = await getSession(sql, id);
    assert.equal(s?.status, 'completed');
    assert.ok(s?.endedAt instanceof Date);
    assert.deepEqual(s?.result, result);

    // A retried session.started does not reset the row.
    await recordEvents({ sessionId: id, events: [started('other')] });
    assert.equal((await getSession(sql, id))?.status, 'completed');
    assert.equal((await getSession(sql, id))?.task, 'build it');
  });

  test('accepts a whole ModelSpec as the started model', async () => {
    const { recordEvents } = looseStore();
    const id = sid('spec');
    await recordEvents({
      sessionId: id,
      events: [{ seq: 0, type: 'session.started', data: { task: 't', model: { provider: 'anthropic', model: 'claude-x' } } }],
    });
    const s = await getSession(sql, id);
    assert.equal(s?.model, 'anthropic:claude-x');
    assert.equal(s?.tenant, 'default');
  });

  test('an event whose text holds NUL characters is recorded, with U+FFFD in their place', async () => {
    const { recordEvents } = looseStore();
    const id = sid('nul');
    await recordEvents({ sessionId: id, events: [started(), { seq: 2, type: 'tool.result', data: { output: 'a\u0000b', ['k\u0000']: ['\u0000'] } }] });
    const events = await getEvents(sql, id);
    assert.deepEqual(events.find((e) => e.seq === 2)?.data, { output: 'a\uFFFDb', ['k\uFFFD']: ['\uFFFD'] });
  });

  test('notifies keel_events with <sessionId>:<maxSeq> on commit', async () => {
    const { recordEvents } = looseStore();
    const id = sid('notify');
    const got: string[] = [];
    const sub = await sql.listen(EVENTS_CHANNEL, (payload) => {
      got.push(payload);
    });
    try {
      await recordEvents({
        sessionId: id,
        events: [started(), { seq: 1, type: 'model.call', data: {} }, { seq: 4, type: 'model.call', data: {} }],
      });
      for (let i = 0; i < 50 && !got.includes(`${id}:4`); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(got.includes(`${id}:4`), `notifications: ${JSON.stringify(got)}`);
      // Steps that only append (the one-statement path) notify too.
      await recordEvents({ sessionId: id, events: [{ seq: 5, type: 'tool.call', data: {} }, { seq: 6, type: 'tool.result', data: {} }] });
      for (let i = 0; i < 50 && !got.includes(`${id}:6`); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(got.includes(`${id}:6`), `notifications: ${JSON.stringify(got)}`);
    } finally {
      await sub.unlisten();
    }
  });

  test('an unreachable database is a retryable Store.Unavailable naming DATABASE_URL, without the password', async () => {
    const bad = connect('postgres://keel:s3cret-pw@127.0.0.1:1/keel', { connectTimeoutSec: 3 });
    try {
      const { recordEvents } = createStoreActivities({ sql: bad });
      await assert.rejects(recordEvents({ sessionId: sid('down'), events: [started()] }), (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure, String(err));
        assert.equal(err.type, 'Store.Unavailable');
        assert.equal(err.nonRetryable, false);
        assert.match(err.message, /DATABASE_URL/);
        assert.doesNotMatch(err.message, /s3cret-pw/);
        return true;
      });
    } finally {
      await bad.end({ timeout: 1 });
    }
  });

  test('data Postgres refuses is a non-retryable Store.BadData, not disguised as Store.Unavailable', async () => {
    const { recordEvents } = looseStore();
    // A seq outside int range is a real error (SQLSTATE 22003), not an outage: retrying cannot help.
    await assert.rejects(
      recordEvents({ sessionId: sid('bad'), events: [{ seq: 2 ** 40, type: 'model.call', data: {} }] }),
      (err: unknown) => {
        assert.ok(err instanceof ApplicationFailure);
        assert.equal(err.type, 'Store.BadData');
        assert.equal(err.nonRetryable, true);
        assert.match(err.message, /22003/);
        return true;
      },
    );
  });

  test('text jsonb cannot hold (NUL, lone surrogates, in values and keys) is stored as U+FFFD, the rest kept', async () => {
    const { recordEvents } = looseStore();
    const id = sid('unstorable');
    const name = `report\udcff.txt`; // a file name that was not valid UTF-8, as the executor escapes it
    await recordEvents({
      sessionId: id,
      events: [
        { seq: 1, type: 'tool.result', data: { output: `a\u0000b ${name} \ud800 ok \ud83d\ude00`, [`k\udc80`]: 1 } },
        { seq: 2, type: 'model.call', data: { text: 'echo \ud800' } },
      ],
    });
    const rows = await getEvents(sql, id);
    assert.equal(rows.length, 2);
    assert.deepEqual(rows[0]?.data, { output: 'a\uFFFDb report\uFFFD.txt \uFFFD ok \ud83d\ude00', 'k\uFFFD': 1 });
    assert.deepEqual(rows[1]?.data, { text: 'echo \uFFFD' });
  });
});

describe('least privilege', () => {
  test("the workers' role owns nothing: it cannot update, delete, truncate, or switch the trigger off", async () => {
    const id = sid('privilege');
    await looseStore().recordEvents({ sessionId: id, events: [started()] });
    const refused = async (statement: string, why: RegExp) =>
      assert.rejects(sql.unsafe(statement), (err: Error & { code?: string }) => {
        assert.match(err.message, why);
        return true;
      });
    await refused(`update events set data = '{}' where session_id = '${id}'`, /permission denied/);
    await refused(`delete from events where session_id = '${id}'`, /permission denied/);
    await refused('truncate events', /permission denied/);
    await refused('alter table events disable trigger events_append_only', /must be owner/);
    await refused('alter table events disable trigger all', /must be owner/);
    await refused('drop trigger events_append_only on events', /must be owner/);
    await refused('alter table events drop column hash', /must be owner/);
    assert.equal((await getEvents(sql, id)).length, 1, 'the event is untouched');
    // And what it needs still works: reading, appending, the session index.
    const [{ n } = { n: 0 }] = await sql<{ n: number }[]>`select count(*)::int as n from events where session_id = ${id}`;
    assert.equal(n, 1);
  });
});

describe('events are append-only', () => {
  test('UPDATE, DELETE and TRUNCATE on events raise, even for the owner (the trigger, behind the privileges)', async () => {
    const { recordEvents } = looseStore();
    const id = sid('immutable');
    await recordEvents({ sessionId: id, events: [started()] });
    const owner = connect(OWNER_URL);
    try {
      await assert.rejects(owner`update events set data = '{}' where session_id = ${id}`, /append-only/);
      await assert.rejects(owner`delete from events where session_id = ${id}`, /append-only/);
      await assert.rejects(owner`truncate events`, /append-only/);
    } finally {
      await owner.end({ timeout: 2 });
    }
    assert.equal((await getEvents(sql, id)).length, 1);
  });
});

describe('queries', () => {
  test('getEvents is ordered by seq and afterSeq tails', async () => {
    const { recordEvents } = looseStore();
    const id = sid('order');
    // Written out of order, in two batches.
    await recordEvents({ sessionId: id, events: [{ seq: 3, type: 'tool.result', data: { i: 3 } }, started()] });
    await recordEvents({
      sessionId: id,
      events: [
        { seq: 2, type: 'tool.call', data: { i: 2 } },
        { seq: 1, type: 'model.call', data: { i: 1 } },
      ],
    });
    const all = await getEvents(sql, id);
    assert.deepEqual(
      all.map((e) => e.seq),
      [0, 1, 2, 3],
    );
    assert.equal(all[0]?.type, 'session.started');
    assert.ok(all[0]?.at instanceof Date);
    const tail = await getEvents(sql, id, { afterSeq: 1 });
    assert.deepEqual(
      tail.map((e) => e.seq),
      [2, 3],
    );
    assert.deepEqual(await getEvents(sql, id, { afterSeq: 3 }), []);
    assert.deepEqual(await getEvents(sql, sid('nobody')), []);
  });

  test('listSessions returns newest first and honours limit; getSession of unknown id is undefined', async () => {
    const { recordEvents } = looseStore();
    const older = sid('list-a');
    const newer = sid('list-b');
    await recordEvents({ sessionId: older, events: [started()] });
    await new Promise((r) => setTimeout(r, 10));
    await recordEvents({ sessionId: newer, events: [started()] });
    // Other suites may share the database: check relative order among ours, and the limit separately.
    const list = await listSessions(sql, { limit: 1000 });
    assert.deepEqual(
      list.map((s) => s.id).filter((id) => id === older || id === newer),
      [newer, older],
    );
    for (let i = 1; i < list.length; i++) assert.ok(list[i - 1]!.createdAt >= list[i]!.createdAt, 'newest first');
    assert.equal((await listSessions(sql, { limit: 1 })).length, 1);
    assert.equal(await getSession(sql, sid('missing')), undefined);
  });
});

describe('tenant daily ceilings', () => {
  test('two workers racing cannot overspend: reservations from two connection pools stop exactly at the ceiling', async () => {
    const owner = connect(OWNER_URL);
    const tenant = `race-${run}`;
    try {
      await setTenantLimits(owner, { tenant, dailyTokens: 1000, dailyUsd: 50 });
    } finally {
      await owner.end({ timeout: 2 });
    }
    // Two "workers": separate pools, each firing 25 reservations of 100 tokens at once.
    const pools = [connect(DATABASE_URL, { max: 8 }), connect(DATABASE_URL, { max: 8 })];
    try {
      const attempts = pools.flatMap((pool, w) =>
        Array.from({ length: 25 }, (_, i) => chargeTenant(pool, { key: `${tenant}/w${w}/${i}`, tenant, tokens: 100, usd: 1, settle: false })),
      );
      const outcomes = await Promise.all(attempts);
      assert.equal(outcomes.filter((o) => o.ok).length, 10, 'exactly ceiling / 100 reservations were granted');
      assert.deepEqual(await tenantUsage(pools[0]!, tenant), { tokens: 1000, usd: 10 });
      // A retried charge (same key) changes nothing, whichever pool retries it.
      const granted = outcomes.findIndex((o) => o.ok);
      const retry = await chargeTenant(pools[1]!, { key: `${tenant}/w${granted < 25 ? 0 : 1}/${granted % 25}`, tenant, tokens: 100, usd: 1, settle: false });
      assert.equal(retry.ok, true);
      assert.equal((await tenantUsage(pools[0]!, tenant)).tokens, 1000);
      // Settling gives back what a call did not use, and then there is room again.
      await chargeTenant(pools[0]!, { key: `${tenant}/settle`, tenant, tokens: -250, usd: -2.5, settle: true });
      assert.deepEqual(await tenantUsage(pools[0]!, tenant), { tokens: 750, usd: 7.5 });
      assert.equal((await chargeTenant(pools[1]!, { key: `${tenant}/after`, tenant, tokens: 250, usd: 1, settle: false })).ok, true);
      assert.equal((await chargeTenant(pools[1]!, { key: `${tenant}/over`, tenant, tokens: 1, usd: 0, settle: false })).ok, false);
    } finally {
      await Promise.all(pools.map((p) => p.end({ timeout: 2 })));
    }
  });
});
