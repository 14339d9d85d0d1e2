/**
 * Chaos on the production shape (`npm run test:cluster`): the Temporal server on Postgres
 * (KEEL_TEST_TEMPORAL=cluster), two session-worker processes, and two sandbox hosts, each a sandbox-host worker
 * with its own Docker engine. Faults at random moments: SIGKILL of a session worker or a sandbox-host worker,
 * `docker kill` of a session container, a Temporal server restart (SIGKILL or SIGTERM), and the loss of a
 * whole sandbox host under load: its worker and every process of its engine killed at once, containers and
 * all, the machine back some seconds later with its disk. The invariants of test/chaos hold: every session
 * completes with the fault-free run's workspace (by digest), events have no gaps or duplicates, and no
 * container is left once each host's reaper has made its pass (teardown removes a session's last container;
 * one a session moved away from is the reaper's, and the run prints how many there were).
 *
 * Env: CHAOS_SESSIONS (default 8), CHAOS_SEED (default: time), CHAOS_MINUTES (default 6). Needs root.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import type { Sql } from 'postgres';
import { KeelClient } from '../../client';
import { listManagedContainers, type ManagedContainer } from '../../host';
import { connectDatabase } from '../../workers/services';
import { reapOnce } from '../../workers/reaper';
import { assertInvariants, Chaos, referenceDigest, runUnderFaults } from '../helpers/chaos';
import { DockerHost } from '../helpers/docker-hosts';
import { ensureSandboxImage, testConfig, uniqueId } from '../helpers/env';
import { spawnWorker, type WorkerProcess } from '../helpers/processes';
import { TestTemporal } from '../helpers/temporal';

const SESSIONS = Number(process.env.CHAOS_SESSIONS ?? 8);
const DEADLINE_MS = Number(process.env.CHAOS_MINUTES ?? 6) * 60_000;
const chaos = new Chaos();

let temporal: TestTemporal;
let client: KeelClient;
let sql: Sql;
/** Sandbox hosts by host id; each engine keeps its data root (and so the loaded image) across runs. */
const hosts = new Map(['keel-cluster-a', 'keel-cluster-b'].map((name) => [uniqueId(name), new DockerHost(name)]));
const sessionWorkers: WorkerProcess[] = [];
const hostWorkers = new Map<string, WorkerProcess>();
const lost = new Set<string>();
const faults: Record<string, number> = { 'session worker SIGKILL': 0, 'sandbox worker SIGKILL': 0, 'docker kill': 0, 'temporal restart': 0, 'host loss': 0 };

async function startSessionWorker(at = sessionWorkers.length): Promise<void> {
  sessionWorkers[at] = await spawnWorker({ TEMPORAL_ADDRESS: temporal.address, KEEL_WORKER_ROLE: 'session', KEEL_REAP_INTERVAL_SEC: '0' });
}

async function startHostWorker(hostId: string): Promise<void> {
  const env = { TEMPORAL_ADDRESS: temporal.address, KEEL_WORKER_ROLE: 'sandbox', KEEL_HOST_ID: hostId, DOCKER_HOST: hosts.get(hostId)!.dockerHost, KEEL_REAP_INTERVAL_SEC: '0' };
  hostWorkers.set(hostId, await spawnWorker(env));
}

/** Containers of these sessions on every host, with the host they are on. */
async function containersOf(ids: string[]): Promise<Array<ManagedContainer & { on: string }>> {
  const all = [];
  for (const [hostId, host] of hosts) {
    for (const c of await listManagedContainers(host.docker).catch(() => [])) if (ids.includes(c.sessionId)) all.push({ ...c, on: hostId });
  }
  return all;
}

async function inject(sessionIds: string[], kind: string): Promise<void> {
  switch (kind) {
    case 'session worker SIGKILL': {
      const at = Math.floor(chaos.random() * sessionWorkers.length);
      await sessionWorkers[at]!.kill('SIGKILL');
      await chaos.pause(500, 2000);
      await startSessionWorker(at);
      break;
    }
    case 'sandbox worker SIGKILL': {
      const hostId = chaos.pick([...hosts.keys()]);
      await hostWorkers.get(hostId)!.kill('SIGKILL');
      await chaos.pause(500, 2000);
      await startHostWorker(hostId);
      break;
    }
    case 'docker kill': {
      // While sessions sleep suspended, or right after a host came back, nothing may run yet: wait a little.
      for (let i = 0; i < 40; i++) {
        const ours = (await containersOf(sessionIds)).filter((c) => c.state === 'running');
        if (ours.length > 0) {
          const c = chaos.pick(ours);
          await hosts.get(c.on)!.docker.getContainer(c.id).kill().catch(() => undefined);
          break;
        }
        if (i === 39) return; // not counted: the check below then fails loudly
        await new Promise((r) => setTimeout(r, 500));
      }
      break;
    }
    case 'temporal restart':
      await temporal.down(chaos.random() < 0.5 ? 'SIGKILL' : 'SIGTERM');
      await chaos.pause(500, 2000);
      await temporal.up();
      break;
    case 'host loss': {
      // Under load: the host with the most running sandboxes, once some run (not while every session sleeps).
      let hostId: string | undefined;
      let running = 0;
      for (let i = 0; i < 40 && !hostId; i++) {
        const counts = [...hosts.keys()].map((id) => [id, 0] as [string, number]);
        for (const c of await containersOf(sessionIds)) if (c.state === 'running') counts.find(([id]) => id === c.on)![1]++;
        const [busiest, n] = counts.sort((a, b) => b[1] - a[1])[0]!;
        if (n > 0) [hostId, running] = [busiest, n];
        else await new Promise((r) => setTimeout(r, 500));
      }
      if (!hostId) return; // not counted: the check below then fails loudly
      await hostWorkers.get(hostId)!.kill('SIGKILL');
      hosts.get(hostId)!.lose();
      lost.add(hostId);
      console.log(`chaos: lost sandbox host ${hostId} with ${running} running sandboxes`);
      // Long enough, at times, for its sessions to give up on it (hostTimeoutSec 15) and restore on the other host.
      await chaos.pause(5000, 25_000);
      await hosts.get(hostId)!.up();
      await startHostWorker(hostId);
      break;
    }
  }
  faults[kind]!++;
}

before(async () => {
  assert.equal(process.env.KEEL_TEST_TEMPORAL, 'cluster', 'run by `npm run test:cluster` (KEEL_TEST_TEMPORAL=cluster)');
  await ensureSandboxImage(new Docker());
  for (const host of hosts.values()) {
    await host.up();
    await host.loadImage();
  }
  temporal = await TestTemporal.start();
  const config = testConfig(temporal.address);
  client = await KeelClient.connect({ address: config.temporalAddress });
  sql = await connectDatabase(config);
  for (let i = 0; i < 2; i++) await startSessionWorker();
  for (const hostId of hosts.keys()) await startHostWorker(hostId);
});

after(async () => {
  for (const w of [...sessionWorkers, ...hostWorkers.values()]) await w.kill('SIGKILL');
  await client?.close();
  await sql?.end({ timeout: 2 });
  await temporal?.down();
  for (const host of hosts.values()) host.lose();
});

test(`${SESSIONS} sessions complete on the cluster under worker, container, server and host faults`, { timeout: DEADLINE_MS + 300_000 }, async () => {
  console.log(`chaos: seed ${chaos.seed}, ${SESSIONS} sessions, Temporal on Postgres at ${temporal.address}, hosts ${[...hosts.keys()].join(', ')}`);
  const reference = await referenceDigest(client, sql);
  const kinds = Object.keys(faults);
  const { ids, results, seconds } = await runUnderFaults(client, sql, SESSIONS, {
    chaos,
    // Container kill and host loss first, while every session is busy.
    firstRound: ['docker kill', 'host loss', 'sandbox worker SIGKILL', 'session worker SIGKILL', 'temporal restart'],
    later: kinds,
    inject: (kind, sessionIds) => inject(sessionIds, kind),
    deadlineMs: DEADLINE_MS,
  });
  console.log(`chaos: faults injected: ${Object.entries(faults).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  console.log(`chaos: all ${SESSIONS} sessions ended in ${seconds} s`);

  await assertInvariants(sql, ids, results, reference.digest);
  for (const kind of kinds) assert.ok(faults[kind]! > 0, `${kind} was injected`);
  const restored = await sql<{ session_id: string }[]>`select distinct session_id from events where session_id = any(${ids}) and type = 'sandbox.restored'`;
  const moved = new Set(restored.map((r) => r.session_id));
  console.log(`chaos: ${moved.size} of ${SESSIONS} sessions were restored from a snapshot at least once`);

  // Teardown removes each session's last container. Others may be left where a session moved away: dead ones on
  // a lost host, or after its worker died; and a provisioning whose worker died after creating the container
  // and was retried on the other host. Each host's reaper removes containers of ended sessions (every minute,
  // once two minutes old): one pass each, as it would, and then nothing may be left.
  const all = [...ids, reference.id];
  const left = await containersOf(all);
  const running = left.filter((c) => c.state === 'running');
  console.log(`chaos: before the reapers' pass: ${left.length} containers of ended sessions left (${running.length} running: ${running.map((c) => c.name).join(', ') || 'none'})`);
  for (const c of left) assert.ok(lost.has(c.on) || moved.has(c.sessionId), `${c.name} on ${c.on} (${c.state}) left behind by a session that never moved`);
  for (const [hostId, host] of hosts) await reapOnce({ docker: host.docker, client: client.temporal, hostId, minAgeSec: 0 });
  assert.deepEqual((await containersOf(all)).map((c) => c.name), [], 'no container left behind');
});
