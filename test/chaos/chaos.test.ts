/**
 * Chaos suite (`npm run chaos`): many scripted sessions run while faults are
 * injected at random moments: SIGKILL of workers, `docker kill` of session
 * containers, a dockerd restart, a Postgres restart and a Temporal server
 * restart. Every session must complete with the same final workspace as a
 * fault-free run (by digest), with no duplicate or missing events, and leave no
 * container behind.
 *
 * Env: CHAOS_SESSIONS (default 20), CHAOS_SEED (default: time), CHAOS_MINUTES (default 12).
 * Restarting dockerd and Postgres needs root and local services; otherwise those
 * faults are skipped and the run says so.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import type { Sql } from 'postgres';
import { KeelClient } from '../../client';
import { listManagedContainers } from '../../host';
import { getEvents } from '../../store';
import { type EventRow } from '../../common/events';
import type { ScriptTurn, SessionResult, SessionSpec } from '../../common/types';
import { connectDatabase } from '../../workers/services';
import { ensureSandboxImage, testConfig, uniqueId } from '../helpers/env';
import { spawnWorker, type WorkerProcess } from '../helpers/processes';
import { TestTemporal } from '../helpers/temporal';

const SESSIONS = Number(process.env.CHAOS_SESSIONS ?? 20);
const DEADLINE_MS = Number(process.env.CHAOS_MINUTES ?? 12) * 60_000;
let seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000);
const SEED = seed;
/** A small deterministic PRNG, so a failing run can be repeated with CHAOS_SEED. */
function random(): number {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
}
const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;

const docker = new Docker();
let temporal: TestTemporal;
let client: KeelClient;
let sql: Sql;
const hosts = ['chaos-a', 'chaos-b'].map((h) => uniqueId(h));
const workers = new Map<string, WorkerProcess>();
const faults: Record<string, number> = { 'worker SIGKILL': 0, 'docker kill': 0, 'dockerd restart': 0, 'postgres restart': 0, 'temporal restart': 0 };
const skipped: string[] = [];

const script: ScriptTurn[] = [
  { toolCalls: [{ name: 'write_file', input: { path: 'proj/main.py', content: 'print("hello")\n' } }] },
  { toolCalls: [{ name: 'shell', input: { command: 'cd proj && export RUNS=0 && python3 main.py > out.txt && sleep 2' } }] },
  { toolCalls: [{ name: 'shell', input: { command: 'echo step >> log.txt && sleep 3 && echo done >> log.txt' } }] },
  { toolCalls: [{ name: 'write_file', input: { path: 'proj/data.csv', content: 'a,b\n1,2\n' } }] },
  { toolCalls: [{ name: 'shell', input: { command: 'sleep 3 && wc -l data.csv >> log.txt' } }] },
  // Sessions wait here (suspended: the sleep is longer than idleSuspendSec) until every kind of
  // fault has been injected once, so each kind hits live sessions however fast they run.
  { toolCalls: [{ name: 'sleep', input: { seconds: 1800, reason: 'the first round of faults' } }] },
  { toolCalls: [{ name: 'shell', input: { command: 'for i in 1 2 3; do echo "row $i" >> data.csv; sleep 1; done' } }] },
  { toolCalls: [{ name: 'read_file', input: { path: 'proj/data.csv' } }] },
  { toolCalls: [{ name: 'shell', input: { command: 'sleep 3 && python3 -c "print(sum(range(10)))" >> log.txt' } }] },
  { toolCalls: [{ name: 'edit_file', input: { path: 'proj/main.py', old_string: 'hello', new_string: 'hello, chaos' } }] },
  { toolCalls: [{ name: 'shell', input: { command: 'python3 main.py >> out.txt && sleep 2 && git init -q . && git add -A && git -c user.email=a@b -c user.name=k commit -qm one --date=2020-01-01T00:00:00 && echo ok' } }] },
  { toolCalls: [{ name: 'shell', input: { command: 'sleep 2; cd /workspace && find . -type f -not -path "*/.git/*" | sort | xargs -r sha256sum' } }] },
  { text: 'done' },
];
const spec: SessionSpec = {
  task: 'chaos',
  model: { provider: 'scripted', model: 'chaos', script },
  sandbox: { hostTimeoutSec: 15 },
};

async function startWorker(host: string): Promise<void> {
  workers.set(host, await spawnWorker({ TEMPORAL_ADDRESS: temporal.address, KEEL_HOST_ID: host }));
}

function canRestartLocal(service: 'dockerd' | 'postgres'): boolean {
  if (process.getuid?.() !== 0) return false;
  if (service === 'dockerd') return !process.env.DOCKER_HOST;
  return !process.env.KEEL_TEST_DATABASE_URL || process.env.KEEL_TEST_DATABASE_URL.includes('localhost');
}

async function restartDockerd(): Promise<void> {
  execFileSync('pkill', ['-TERM', '-x', 'dockerd']);
  for (let i = 0; i < 100; i++) {
    try {
      execFileSync('pgrep', ['-x', 'dockerd']);
      await new Promise((r) => setTimeout(r, 200));
    } catch {
      break;
    }
  }
  const log = openSync(join(temporal.dir, 'dockerd.log'), 'a');
  spawn('dockerd', [], { detached: true, stdio: ['ignore', log, log] }).unref();
  for (let i = 0; i < 150; i++) {
    try {
      await docker.ping();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error('dockerd did not come back');
}

function restartPostgres(): void {
  const [cluster] = execFileSync('pg_lsclusters', ['--no-header']).toString().trim().split('\n');
  const [version, name] = cluster!.split(/\s+/);
  execFileSync('pg_ctlcluster', [version!, name!, 'restart']);
}

const available = () => Object.keys(faults).filter((k) => !skipped.includes(k));

async function inject(sessionIds: string[], kind: string): Promise<void> {
  switch (kind) {
    case 'worker SIGKILL': {
      const host = pick(hosts);
      await workers.get(host)?.kill('SIGKILL');
      await new Promise((r) => setTimeout(r, 500 + random() * 1500));
      await startWorker(host);
      break;
    }
    case 'docker kill': {
      // Right after a dockerd restart, or while sessions sleep suspended, nothing may run yet: wait a little.
      for (let i = 0; i < 40; i++) {
        const ours = (await listManagedContainers(docker)).filter((c) => c.state === 'running' && sessionIds.includes(c.sessionId));
        if (ours.length > 0) {
          await docker.getContainer(pick(ours).id).kill().catch(() => undefined);
          break;
        }
        if (i === 39) return; // not counted: the check below then fails loudly
        await new Promise((r) => setTimeout(r, 500));
      }
      break;
    }
    case 'dockerd restart':
      await restartDockerd();
      break;
    case 'postgres restart':
      restartPostgres();
      break;
    case 'temporal restart':
      await temporal.down(random() < 0.5 ? 'SIGKILL' : 'SIGTERM');
      await new Promise((r) => setTimeout(r, 500 + random() * 1500));
      await temporal.up();
      break;
  }
  faults[kind]!++;
}

/**
 * Send each session the message that ends its sleep, once its sleep has begun (a message that
 * arrives earlier reaches the model instead, and does not end a later sleep). Retries across restarts.
 */
async function wake(ids: string[]): Promise<void> {
  const pending = new Set(ids);
  while (pending.size > 0) {
    for (const id of [...pending]) {
      try {
        const events = await getEvents(sql, id);
        if (events.some((e) => e.type === 'session.ended')) pending.delete(id);
        else if (events.some((e) => e.type === 'tool.call' && e.data.name === 'sleep')) {
          await client.message(id, 'every fault kind has been injected once: go on');
          pending.delete(id);
        }
      } catch {
        // Postgres or Temporal is restarting: try again on the next pass.
      }
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Wait for a result across Temporal restarts. */
async function resultOf(id: string): Promise<SessionResult> {
  for (;;) {
    try {
      return await client.result(id);
    } catch {
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

before(async () => {
  if (!canRestartLocal('dockerd')) skipped.push('dockerd restart');
  if (!canRestartLocal('postgres')) skipped.push('postgres restart');
  await ensureSandboxImage(docker);
  temporal = await TestTemporal.start();
  const config = testConfig(temporal.address);
  client = await KeelClient.connect({ address: config.temporalAddress });
  sql = await connectDatabase(config);
  for (const host of hosts) await startWorker(host);
});

after(async () => {
  for (const w of workers.values()) await w.kill('SIGKILL');
  await client?.close();
  await sql?.end({ timeout: 2 });
  await temporal?.down();
});

const digestOf = (events: EventRow[]) => String(events.filter((e) => e.type === 'tool.result').at(-1)?.data.output);

test(`${SESSIONS} sessions complete under injected faults with the same workspace as a fault-free run`, { timeout: DEADLINE_MS + 120_000 }, async () => {
  console.log(`chaos: seed ${SEED}, ${SESSIONS} sessions${skipped.length ? `; skipping ${skipped.join(', ')} (needs root and local services)` : ''}`);
  const reference = await client.start(spec, { sessionId: uniqueId('chaos-ref') });
  await wake([reference]);
  assert.equal((await client.result(reference)).status, 'completed');
  const expected = digestOf(await getEvents(sql, reference));
  assert.match(expected, /proj\/main\.py/);

  const ids: string[] = [];
  for (let i = 0; i < SESSIONS; i++) ids.push(await client.start(spec, { sessionId: uniqueId(`chaos-${i}`) }));
  const results = new Map<string, SessionResult>();
  const done = Promise.all(ids.map(async (id) => results.set(id, await resultOf(id))));

  let finished = false;
  let waking: Promise<void> | undefined;
  const finish = () => (finished = true);
  done.then(finish, finish);
  const started = Date.now();
  // Each kind once, 2.5 to 4.5 s apart; then at random, 6 to 10 s apart, so that
  // sessions still make progress between dockerd restarts (each one sends every session to a restore).
  // Container kills first, while every session is busy; dockerd restart last, since it stops all containers.
  const order = ['docker kill', 'worker SIGKILL', 'postgres restart', 'temporal restart', 'dockerd restart'];
  const firstRound = order.filter((k) => available().includes(k));
  while (!finished && Date.now() - started < DEADLINE_MS) {
    await new Promise((r) => setTimeout(r, firstRound.length > 0 ? 2500 + random() * 2000 : 6000 + random() * 4000));
    if (finished) break;
    const kind = firstRound.shift();
    await inject(ids, kind ?? pick(available()));
    if (kind && firstRound.length === 0) waking = wake(ids);
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('sessions did not finish in time')), 180_000)));
  await Promise.race([done, late]).finally(() => clearTimeout(timer));
  await waking;
  console.log(`chaos: faults injected: ${Object.entries(faults).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  console.log(`chaos: all ${SESSIONS} sessions ended in ${((Date.now() - started) / 1000).toFixed(0)} s`);

  for (const id of ids) {
    const result = results.get(id)!;
    assert.equal(result.status, 'completed', `${id}: ${result.error}`);
    const events = await getEvents(sql, id);
    assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1), `${id}: no gaps or duplicates`);
    assert.equal(events.filter((e) => e.type === 'tool.call').length, script.length - 1, `${id}: one tool.call per call`);
    assert.equal(digestOf(events), expected, `${id}: same final workspace as the fault-free run`);
  }
  for (const kind of Object.keys(faults)) {
    if (!skipped.includes(kind)) assert.ok(faults[kind]! > 0, `${kind} was injected`);
  }
  // Teardown is the last step of each session; give dockerd a moment after its last restart.
  const left = await listManagedContainers(docker);
  const orphans = left.filter((c) => ids.includes(c.sessionId) || c.sessionId === reference);
  assert.deepEqual(orphans.map((c) => c.name), [], 'no container left behind');
});
