/**
 * What the chaos suites share (test/chaos on one machine, test/cluster on the Postgres-backed server with
 * separate sandbox hosts): the session script, the seeded randomness, the fault loop, and the invariants every
 * session must meet afterwards. Each suite brings its own faults.
 */
import assert from 'node:assert/strict';
import type { Sql } from 'postgres';
import type { KeelClient } from '../../client';
import type { EventRow } from '../../common/events';
import type { ScriptTurn, SessionResult, SessionSpec } from '../../common/types';
import { getEvents } from '../../store';
import { uniqueId } from './env';

/** A small deterministic PRNG, so a failing run can be repeated with CHAOS_SEED. */
export class Chaos {
  readonly seed: number;
  private state: number;

  constructor(seed = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000)) {
    this.seed = this.state = seed;
  }

  random(): number {
    this.state = (this.state * 1103515245 + 12345) % 2147483648;
    return this.state / 2147483648;
  }

  pick<T>(xs: T[]): T {
    return xs[Math.floor(this.random() * xs.length)]!;
  }

  /** Wait between `min` and `max` ms. */
  pause(min: number, max: number): Promise<void> {
    return new Promise((r) => setTimeout(r, min + this.random() * (max - min)));
  }
}

export const script: ScriptTurn[] = [
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

export const spec: SessionSpec = {
  task: 'chaos',
  model: { provider: 'scripted', model: 'chaos', script },
  sandbox: { hostTimeoutSec: 15 },
};

export const digestOf = (events: EventRow[]) => String(events.filter((e) => e.type === 'tool.result').at(-1)?.data.output);

/**
 * Send each session the message that ends its sleep, once its sleep has begun (a message that
 * arrives earlier reaches the model instead, and does not end a later sleep). Retries across restarts.
 */
export async function wake(client: KeelClient, sql: Sql, ids: string[]): Promise<void> {
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
export async function resultOf(client: KeelClient, id: string): Promise<SessionResult> {
  for (;;) {
    try {
      return await client.result(id);
    } catch {
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** The fault-free run every chaos session is compared with: its final workspace digest. */
export async function referenceDigest(client: KeelClient, sql: Sql): Promise<{ id: string; digest: string }> {
  const id = await client.start(spec, { sessionId: uniqueId('chaos-ref') });
  await wake(client, sql, [id]);
  assert.equal((await client.result(id)).status, 'completed');
  const digest = digestOf(await getEvents(sql, id));
  assert.match(digest, /proj\/main\.py/);
  return { id, digest };
}

export interface ChaosRun {
  chaos: Chaos;
  /** Fault kinds, in the order of the first round (each once, 2.5 to 4.5 s apart, while sessions are busy). */
  firstRound: string[];
  /** Kinds to pick from at random afterwards, 6 to 10 s apart, until every session has ended. */
  later: string[];
  /** Inject one fault of `kind` while the sessions `ids` run. */
  inject(kind: string, ids: string[]): Promise<void>;
  deadlineMs: number;
}

/**
 * Start `sessions` sessions, inject faults until they have all ended, and return their results. Sessions
 * sleep until the first round is over, so every kind hits live sessions; the later pace lets sessions make
 * progress between faults that send every session to a restore.
 */
export async function runUnderFaults(client: KeelClient, sql: Sql, sessions: number, run: ChaosRun): Promise<{ ids: string[]; results: Map<string, SessionResult>; seconds: number }> {
  const ids: string[] = [];
  for (let i = 0; i < sessions; i++) ids.push(await client.start(spec, { sessionId: uniqueId(`chaos-${i}`) }));
  const results = new Map<string, SessionResult>();
  const done = Promise.all(ids.map(async (id) => results.set(id, await resultOf(client, id))));

  let finished = false;
  let waking: Promise<void> | undefined;
  const finish = () => (finished = true);
  done.then(finish, finish);
  const started = Date.now();
  const firstRound = [...run.firstRound];
  while (!finished && Date.now() - started < run.deadlineMs) {
    await (firstRound.length > 0 ? run.chaos.pause(2500, 4500) : run.chaos.pause(6000, 10_000));
    if (finished) break;
    const kind = firstRound.shift();
    await run.inject(kind ?? run.chaos.pick(run.later), ids);
    if (kind && firstRound.length === 0) waking = wake(client, sql, ids);
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('sessions did not finish in time')), 180_000)));
  await Promise.race([done, late]).finally(() => clearTimeout(timer));
  await waking;
  return { ids, results, seconds: Math.round((Date.now() - started) / 1000) };
}

/** Every session completed, with no gap or duplicate in its events, one tool.call per call, and the reference workspace. */
export async function assertInvariants(sql: Sql, ids: string[], results: Map<string, SessionResult>, expected: string): Promise<void> {
  for (const id of ids) {
    const result = results.get(id)!;
    assert.equal(result.status, 'completed', `${id}: ${result.error}`);
    const events = await getEvents(sql, id);
    assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1), `${id}: no gaps or duplicates`);
    assert.equal(events.filter((e) => e.type === 'tool.call').length, script.length - 1, `${id}: one tool.call per call`);
    assert.equal(digestOf(events), expected, `${id}: same final workspace as the fault-free run`);
  }
}
