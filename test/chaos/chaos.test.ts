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
import { connectDatabase } from '../../workers/services';
import { assertInvariants, Chaos, referenceDigest, runUnderFaults } from '../helpers/chaos';
import { ensureSandboxImage, testConfig, uniqueId } from '../helpers/env';
import { spawnWorker, type WorkerProcess } from '../helpers/processes';
import { TestTemporal } from '../helpers/temporal';

const SESSIONS = Number(process.env.CHAOS_SESSIONS ?? 20);
const DEADLINE_MS = Number(process.env.CHAOS_MINUTES ?? 12) * 60_000;
const chaos = new Chaos();

const docker = new Docker();
let temporal: TestTemporal;
let client: KeelClient;
let sql: Sql;
const hosts = ['chaos-a', 'chaos-b'].map((h) => uniqueId(h));
const workers = new Map<string, WorkerProcess>();
const faults: Record<string, number> = { 'worker SIGKILL': 0, 'docker kill': 0, 'dockerd restart': 0, 'postgres restart': 0, 'temporal restart': 0 };
const skipped: string[] = [];

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
      const host = chaos.pick(hosts);
      await workers.get(host)?.kill('SIGKILL');
      await chaos.pause(500, 2000);
      await startWorker(host);
      break;
    }
    case 'docker kill': {
      // Right after a dockerd restart, or while sessions sleep suspended, nothing may run yet: wait a little.
      for (let i = 0; i < 40; i++) {
        const ours = (await listManagedContainers(docker)).filter((c) => c.state === 'running' && sessionIds.includes(c.sessionId));
        if (ours.length > 0) {
          await docker.getContainer(chaos.pick(ours).id).kill().catch(() => undefined);
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
      await temporal.down(chaos.random() < 0.5 ? 'SIGKILL' : 'SIGTERM');
      await chaos.pause(500, 2000);
      await temporal.up();
      break;
  }
  faults[kind]!++;
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

test(`${SESSIONS} sessions complete under injected faults with the same workspace as a fault-free run`, { timeout: DEADLINE_MS + 300_000 }, async () => {
  console.log(`chaos: seed ${chaos.seed}, ${SESSIONS} sessions${skipped.length ? `; skipping ${skipped.join(', ')} (needs root and local services)` : ''}`);
  const reference = await referenceDigest(client, sql);
  // Container kills first, while every session is busy; dockerd restart last, since it stops all containers.
  const order = ['docker kill', 'worker SIGKILL', 'postgres restart', 'temporal restart', 'dockerd restart'];
  const { ids, results, seconds } = await runUnderFaults(client, sql, SESSIONS, {
    chaos,
    firstRound: order.filter((k) => available().includes(k)),
    later: available(),
    inject: (kind, ids) => inject(ids, kind),
    deadlineMs: DEADLINE_MS,
  });
  console.log(`chaos: faults injected: ${Object.entries(faults).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  console.log(`chaos: all ${SESSIONS} sessions ended in ${seconds} s`);

  await assertInvariants(sql, ids, results, reference.digest);
  for (const kind of Object.keys(faults)) {
    if (!skipped.includes(kind)) assert.ok(faults[kind]! > 0, `${kind} was injected`);
  }
  // Teardown is the last step of each session; give dockerd a moment after its last restart.
  const left = await listManagedContainers(docker);
  const orphans = left.filter((c) => ids.includes(c.sessionId) || c.sessionId === reference.id);
  assert.deepEqual(orphans.map((c) => c.name), [], 'no container left behind');
});
