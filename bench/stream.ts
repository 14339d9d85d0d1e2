/**
 * Live streaming under load, bounded and local: BENCH_STREAM_CLIENTS Server-Sent Events clients
 * (default 100) on BENCH_STREAM_SESSIONS live sessions (default 10), through `keel serve` in its
 * own process, with the sessions run by a worker in another.
 *
 * Each session starts kept alive and waits; its clients connect (resuming after the session's
 * last event, so only live events count), a message wakes every session, and each makes
 * BENCH_STREAM_STEPS tool calls (default 20) and waits again; then it is closed and its streams
 * end. Every tenth client drops its connection after ten events and reconnects with
 * Last-Event-ID. Delivery latency is, per event and client, the time from the event's row being
 * written (`events.at`, the server's clock_timestamp()) to the client parsing it. Each client's
 * events must equal the log's, with none missed and none twice.
 *
 * The baseline, in the same run on fresh sessions: the same clients following by polling
 * Postgres every 150 ms, as `keel run` did before the stream existed.
 *
 *   node --import tsx bench/stream.ts
 */
import '../test/helpers/quiet';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { ScriptTurn } from '../common/types';
import { connect, createApiKey, getEvents, migrate, type Sql } from '../store';
import { connectDatabase } from '../workers/services';
import { testConfig, testOwnerUrl, uniqueId } from '../test/helpers/env';
import { spawnWorker } from '../test/helpers/processes';
import { openSse } from '../test/helpers/sse';
import { freePort, TestTemporal } from '../test/helpers/temporal';
import { summarize, type Summary } from './stats';

const SESSIONS = Number(process.env.BENCH_STREAM_SESSIONS ?? 10);
const CLIENTS = Number(process.env.BENCH_STREAM_CLIENTS ?? 100);
const STEPS = Number(process.env.BENCH_STREAM_STEPS ?? 20);
const POLL_MS = 150;

export interface StreamFigures {
  clients: number;
  sessions: number;
  deliveries: number;
  missed: number;
  duplicated: number;
  reconnects: number;
  latencyMs: Summary;
  baseline: { deliveries: number; missed: number; duplicated: number; latencyMs: Summary };
}

interface Api {
  url: string;
  key: string;
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
}

/** What one client received, for the missed / twice count. */
interface Received {
  sessionId: string;
  from: number;
  seqs: number[];
}

const shell = (command: string): ScriptTurn => ({ toolCalls: [{ name: 'shell', input: { command } }] });

async function startSessions(api: Api, label: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < SESSIONS; i++) {
    const id = uniqueId(`stream-${label}-${i}`);
    const script: ScriptTurn[] = [{ text: 'ready' }, ...Array.from({ length: STEPS }, (_, s) => shell(`echo ${label} ${i} ${s}`)), { text: 'done' }];
    const r = await api.call('POST', '/sessions', { id, task: `stream bench ${i}`, model: { provider: 'scripted', model: 'stream-bench', script }, keepAlive: true });
    if (r.status !== 201) throw new Error(`start failed: ${JSON.stringify(r.body)}`);
    ids.push(id);
  }
  return ids;
}

/** Wait until every session has made `turns` model calls and waits for a message. */
async function untilWaiting(sql: Sql, ids: string[], turns: number): Promise<void> {
  const deadline = Date.now() + 300_000;
  for (;;) {
    const rows = await sql<{ id: string; status: string; calls: number }[]>`
      select s.id, s.status, (select count(*)::int from events e where e.session_id = s.id and e.type = 'model.call') as calls
      from sessions s where s.id in ${sql(ids)}`;
    if (rows.length === ids.length && rows.every((r) => r.status === 'waiting' && r.calls >= turns)) return;
    if (Date.now() > deadline) throw new Error(`sessions not waiting: ${JSON.stringify(rows)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function lastSeq(sql: Sql, id: string): Promise<number> {
  return (await getEvents(sql, id)).at(-1)?.seq ?? 0;
}

/** Drive the sessions from waiting to ended while `clients` follow them; returns when all ended. */
async function drive(api: Api, sql: Sql, ids: string[]): Promise<void> {
  for (const id of ids) if ((await api.call('POST', `/sessions/${id}/messages`, { text: 'go' })).status !== 202) throw new Error('message refused');
  await untilWaiting(sql, ids, STEPS + 2);
  for (const id of ids) await api.call('POST', `/sessions/${id}/close`);
}

async function sseRound(api: Api, sql: Sql): Promise<{ received: Received[]; latency: number[]; reconnects: number }> {
  const ids = await startSessions(api, 'sse');
  await untilWaiting(sql, ids, 1);
  const latency: number[] = [];
  const received: Received[] = [];
  let reconnects = 0;
  const done: Array<Promise<void>> = [];
  for (let c = 0; c < CLIENTS; c++) {
    const sessionId = ids[c % ids.length]!;
    const from = await lastSeq(sql, sessionId);
    const r: Received = { sessionId, from, seqs: [] };
    received.push(r);
    const dropper = c % 10 === 0;
    const follow = async (after: number, mayDrop: boolean): Promise<void> => {
      let ended = false;
      let dropped = false;
      const stream = await openSse(`${api.url}/sessions/${sessionId}/stream`, { authorization: `Bearer ${api.key}`, 'last-event-id': String(after) }, (m) => {
        if (dropped) return;
        if (m.event === 'end') ended = true;
        if (!m.id) return;
        const e = JSON.parse(m.data) as { seq: number; at: string };
        latency.push(Date.now() - Date.parse(e.at));
        r.seqs.push(e.seq);
        if (mayDrop && r.seqs.length === 10) {
          dropped = true;
          stream.abort();
        }
      });
      if (stream.status !== 200) throw new Error(`stream refused: ${JSON.stringify(stream.error)}`);
      await stream.closed;
      if (dropped) {
        reconnects++;
        return follow(r.seqs.at(-1)!, false);
      }
      if (!ended) throw new Error(`stream of ${sessionId} closed without its end`);
    };
    done.push(follow(from, dropper));
  }
  await drive(api, sql, ids);
  await Promise.all(done);
  return { received, latency, reconnects };
}

async function pollRound(api: Api, sql: Sql): Promise<{ received: Received[]; latency: number[] }> {
  const ids = await startSessions(api, 'poll');
  await untilWaiting(sql, ids, 1);
  const latency: number[] = [];
  const received: Received[] = [];
  const done: Array<Promise<void>> = [];
  for (let c = 0; c < CLIENTS; c++) {
    const sessionId = ids[c % ids.length]!;
    const r: Received = { sessionId, from: await lastSeq(sql, sessionId), seqs: [] };
    received.push(r);
    done.push(
      (async () => {
        let after = r.from;
        for (;;) {
          const rows = await getEvents(sql, sessionId, { afterSeq: after });
          for (const e of rows) {
            latency.push(Date.now() - e.at.getTime());
            r.seqs.push(e.seq);
            after = e.seq;
          }
          if (rows.some((e) => e.type === 'session.ended')) return;
          await new Promise((res) => setTimeout(res, POLL_MS));
        }
      })(),
    );
  }
  await drive(api, sql, ids);
  await Promise.all(done);
  return { received, latency };
}

/** Missed and twice-delivered events of every client, against the log up to `session.ended`. */
async function check(sql: Sql, received: Received[]): Promise<{ deliveries: number; missed: number; duplicated: number }> {
  let missed = 0;
  let duplicated = 0;
  let deliveries = 0;
  const logs = new Map<string, number[]>();
  for (const r of received) {
    if (!logs.has(r.sessionId)) {
      const events = await getEvents(sql, r.sessionId);
      const end = events.findIndex((e) => e.type === 'session.ended');
      logs.set(r.sessionId, events.slice(0, end + 1).map((e) => e.seq));
    }
    const expected = logs.get(r.sessionId)!.filter((s) => s > r.from);
    const got = new Set(r.seqs);
    deliveries += r.seqs.length;
    duplicated += r.seqs.length - got.size;
    missed += expected.filter((s) => !got.has(s)).length;
  }
  return { deliveries, missed, duplicated };
}

/** `keel serve` in its own process; resolves once it listens. */
async function serve(env: Record<string, string>): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '..', 'test', 'helpers', 'cli-entry.ts'), 'serve', '--port', String(port)], {
    env: { ...process.env, ...env, KEEL_LOG_LEVEL: 'WARN' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`keel serve did not start:\n${out}`)), 60_000);
    child.stdout!.on('data', () => out.includes('keel API on') && (clearTimeout(timer), resolve()));
    child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`keel serve exited with ${code}:\n${out}`))));
  });
  return { url: `http://127.0.0.1:${port}`, child };
}

export async function benchStream(log: (line: string) => void = console.log): Promise<StreamFigures> {
  const temporal = await TestTemporal.start();
  const env = { TEMPORAL_ADDRESS: temporal.address, KEEL_HOST_ID: uniqueId('stream-bench'), KEEL_REAP_INTERVAL_SEC: '0', KEEL_GC_INTERVAL_SEC: '0' };
  const owner = connect(testOwnerUrl());
  await migrate(owner);
  const sql = await connectDatabase(testConfig(temporal.address, env));
  const worker = await spawnWorker(env);
  const server = await serve(env);
  try {
    const key = (await createApiKey(owner, uniqueId('bench-tenant'))).key;
    const api: Api = {
      url: server.url,
      key,
      async call(method, path, body) {
        const res = await fetch(`${server.url}${path}`, {
          method,
          headers: { authorization: `Bearer ${key}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
        const text = await res.text();
        return { status: res.status, body: text ? JSON.parse(text) : undefined };
      },
    };
    log(`stream: ${CLIENTS} SSE clients on ${SESSIONS} sessions x ${STEPS} tool calls ...`);
    const sse = await sseRound(api, sql);
    const sseCheck = await check(sql, sse.received);
    log(`baseline: ${CLIENTS} clients polling Postgres every ${POLL_MS} ms ...`);
    const poll = await pollRound(api, sql);
    const pollCheck = await check(sql, poll.received);
    return {
      clients: CLIENTS,
      sessions: SESSIONS,
      ...sseCheck,
      reconnects: sse.reconnects,
      latencyMs: summarize(sse.latency),
      baseline: { ...pollCheck, latencyMs: summarize(poll.latency) },
    };
  } finally {
    server.child.kill('SIGTERM');
    await worker.kill('SIGTERM');
    await sql.end({ timeout: 2 });
    await owner.end({ timeout: 2 });
    await temporal.down();
  }
}

function printFigures(f: StreamFigures): void {
  const row = (name: string, s: Summary) => `${name.padEnd(34)} ${s.p50.toFixed(1).padStart(7)} ${s.p95.toFixed(1).padStart(7)} ${s.p99.toFixed(1).padStart(7)} ${s.max.toFixed(1).padStart(7)}   (n=${s.n})`;
  console.log(`\n${'delivery latency, commit -> client (ms)'.padEnd(34)} ${'p50'.padStart(7)} ${'p95'.padStart(7)} ${'p99'.padStart(7)} ${'max'.padStart(7)}`);
  console.log(row(`SSE (LISTEN/NOTIFY), ${f.clients} clients`, f.latencyMs));
  console.log(row(`baseline: polling every ${POLL_MS} ms`, f.baseline.latencyMs));
  console.log(`ratio (baseline p50 / SSE p50): ${(f.baseline.latencyMs.p50 / f.latencyMs.p50).toFixed(1)}x`);
  console.log(`SSE: ${f.deliveries} deliveries, ${f.missed} missed, ${f.duplicated} duplicated, ${f.reconnects} reconnects with Last-Event-ID: ${f.missed === 0 && f.duplicated === 0 ? 'PASS' : 'FAIL'}`);
  console.log(`baseline: ${f.baseline.deliveries} deliveries, ${f.baseline.missed} missed, ${f.baseline.duplicated} duplicated`);
}

if (require.main === module) {
  benchStream().then(
    (f) => {
      printFigures(f);
      process.exitCode = f.missed === 0 && f.duplicated === 0 ? 0 : 1;
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
