/**
 * Warm pools of named images (`KEEL_POOL_IMAGES`) on real Docker, a real Temporal dev server and Postgres:
 * a worker pools a custom image (built from test/fixtures/custom-image) beside the default image, a
 * session on either is served from its own pool, a session on another image starts cold, the named pool
 * refills, and a missing or contract-breaking image stops the worker with the image and the fix.
 *
 *   node --import tsx --test test/integration/pool-images.test.ts
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import type { Sql } from 'postgres';
import { KeelClient } from '../../client';
import { ServiceError } from '../../common/errors';
import { eventsOfType } from '../../common/events';
import type { ScriptTurn, SessionSpec } from '../../common/types';
import { poolsCheck } from '../../cli/doctor';
import { buildCustomImage } from '../../host/custom-image';
import { defaultImageTag } from '../../host/image';
import { claimVolumeName } from '../../host/labels';
import { getEvents } from '../../store';
import { connectDatabase } from '../../workers/services';
import { createWorkers, type KeelWorkers } from '../../workers/worker';
import { runCli } from '../helpers/cli';
import { ensureSandboxImage, sessionContainers, testConfig, uniqueId, workflowBundle } from '../helpers/env';
import { TestTemporal } from '../helpers/temporal';

const fixtures = join(__dirname, '..', 'fixtures');
const docker = new Docker();
const base = defaultImageTag();
const run = uniqueId('pi').toLowerCase();
/** Pooled (KEEL_POOL_IMAGES), the same image under a name that is not pooled, and one that breaks the contract. */
const pooled = `keel-custom-test:${run}`;
const unpooled = `keel-custom-test:${run}-cold`;
const broken = `keel-custom-test:${run}-root`;
const missing = `keel-no-such-image:${run}`;
const hostId = `pool-images-${run}`;

let temporal: TestTemporal;
let workers: KeelWorkers;
let running: Promise<void>;
let client: KeelClient;
let sql: Sql;

/** `docker build` of a fixture as is: no contract check, so a broken image gets its tag. */
function dockerBuild(dir: string, tag: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('docker', ['build', '--network', 'none', '--build-arg', `KEEL_BASE=${base}`, '-t', tag, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`docker build ${dir} failed: ${err.slice(-2000)}`))));
  });
}

/** This host's idle pool containers (running, not yet renamed by a claim), by the image they were made from. */
async function idle(): Promise<Map<string, string[]>> {
  const list = await docker.listContainers({ filters: { label: [`keel.pool=${hostId}`], status: ['running'] } });
  const out = new Map<string, string[]>();
  for (const c of list.filter((c) => c.Names.some((n) => n.startsWith('/keel-pool-'))).sort((a, b) => a.Created - b.Created)) {
    out.set(c.Image, [...(out.get(c.Image) ?? []), c.Id]);
  }
  return out;
}

/** Wait until the pools hold `want` idle containers per image (a refill takes a few seconds). */
async function poolsHold(want: Record<string, number>, timeoutMs = 120_000): Promise<Map<string, string[]>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const now = await idle();
    if (Object.entries(want).every(([image, n]) => (now.get(image)?.length ?? 0) === n)) return now;
    if (Date.now() > until) throw new Error(`pools hold ${JSON.stringify([...now].map(([i, ids]) => [i, ids.length]))}, not ${JSON.stringify(want)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const shell = (command: string): ScriptTurn => ({ toolCalls: [{ name: 'shell', input: { command } }] });
/** The executor's command line: a pool container's has `--pool-lease`, a cold one's not. */
const CMDLINE = "tr '\\0' ' ' < /proc/1/cmdline; echo";

/**
 * Run a session whose one shell call prints `keel-hello`'s greeting (when the image has it) and the executor's
 * command line, then sleeps so that its container can be looked at while the session holds it.
 */
async function session(image?: string) {
  const spec: SessionSpec = {
    task: 'pool images test',
    model: { provider: 'scripted', model: 'test', script: [shell(`(keel-hello pool 2>/dev/null || echo no-hello); ${CMDLINE}; sleep 3`), { text: 'done' }] },
    ...(image ? { sandbox: { image } } : {}),
  };
  const id = await client.start(spec, { sessionId: uniqueId('pi') });
  // While the call sleeps: the session's container as Keel's own lookup finds it (a claim record for a pool one).
  let held = await sessionContainers(docker, id);
  for (let i = 0; i < 200 && !held.length; i++) {
    await new Promise((r) => setTimeout(r, 100));
    held = await sessionContainers(docker, id);
  }
  assert.equal(held.length, 1, 'the session holds one container');
  const container = held[0]!;
  const info = await docker.getContainer(container.id).inspect();
  const claim = await docker.getVolume(claimVolumeName(container.id)).inspect().catch(() => undefined);
  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(sql, id);
  const provisioned = eventsOfType(events, 'sandbox.provisioned')[0]?.data;
  const out = eventsOfType(events, 'tool.result')[0]?.data;
  assert.equal(provisioned?.containerId, container.id);
  return { id, container, info, claim, provisioned, output: String(out?.output ?? '') };
}

before(
  async () => {
    await ensureSandboxImage(docker);
    await buildCustomImage(docker, { from: join(fixtures, 'custom-image'), base, tag: pooled, network: 'none' });
    const [repo, version] = unpooled.split(':') as [string, string];
    await docker.getImage(pooled).tag({ repo, tag: version });
    temporal = await TestTemporal.start();
    const config = testConfig(temporal.address, { KEEL_HOST_ID: hostId, KEEL_POOL_SIZE: '1', KEEL_POOL_IMAGES: `${pooled}=2` });
    workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
    running = workers.run();
    client = await KeelClient.connect({ address: config.temporalAddress });
    sql = await connectDatabase(config);
  },
  { timeout: 900_000 },
);

after(async () => {
  await workers?.shutdown();
  await running;
  await client?.close();
  await sql?.end({ timeout: 2 });
  await temporal?.down();
  for (const tag of [pooled, unpooled, broken]) await docker.getImage(tag).remove().catch(() => {});
});

describe('warm pools of named images', () => {
  it('keeps a pool of each image: the default with KEEL_POOL_SIZE, the named one with its size', async () => {
    const now = await poolsHold({ [base]: 1, [pooled]: 2 });
    assert.deepEqual([...now.keys()].sort(), [base, pooled].sort(), 'no pool of any other image');
  });

  it('serves a session on a pooled named image from that pool: a claimed pool container of the image, its tool working', async () => {
    const before = await poolsHold({ [base]: 1, [pooled]: 2 });
    const s = await session(pooled);
    assert.ok(before.get(pooled)!.includes(s.container.id), 'the container was idle in the named pool');
    assert.equal(s.info.Config.Image, pooled);
    assert.equal(s.info.Config.Labels['keel.pool'], hostId, 'a pool container');
    assert.equal(s.info.Name, `/keel-${s.id}`, 'renamed to the session by the claim');
    assert.ok(s.container.poolVolume, 'its workspace is the pool volume it was made with');
    assert.equal(s.claim?.Labels['keel.session'], s.id, 'the claim record names the session');
    assert.equal(s.provisioned?.image, pooled, 'the session ran on the named image');
    assert.match(s.output, /^keel-hello: hello pool from keel\n/, 'the image\'s own tool ran');
    assert.match(s.output, /executor\.py .*--pool-lease \d+/, 'the executor was started by the pool');
  });

  it('refills the named pool with a new container of the image', async () => {
    const before = new Set((await idle()).get(pooled) ?? []);
    await session(pooled);
    const now = await poolsHold({ [base]: 1, [pooled]: 2 });
    assert.ok(now.get(pooled)!.some((id) => !before.has(id)), 'a new container joined the named pool');
    for (const id of now.get(pooled)!) assert.equal((await docker.getContainer(id).inspect()).Config.Image, pooled);
  });

  it('still serves a session on the default image from the default pool', async () => {
    const before = await poolsHold({ [base]: 1, [pooled]: 2 });
    const s = await session();
    assert.deepEqual([s.container.id], before.get(base), 'the default pool\'s container');
    assert.equal(s.info.Config.Image, base);
    assert.equal(s.claim?.Labels['keel.session'], s.id);
    assert.equal(s.provisioned?.image, base);
    assert.match(s.output, /^no-hello\n/, 'no custom tool in the default image');
    assert.match(s.output, /--pool-lease/);
  });

  it('starts a session on an image that is not in the list cold, even when it is a pooled image under another name', async () => {
    const before = await poolsHold({ [base]: 1, [pooled]: 2 });
    const s = await session(unpooled);
    assert.ok(![...before.values()].flat().includes(s.container.id), 'not a pool container');
    assert.equal(s.info.Config.Labels['keel.pool'], undefined);
    assert.equal(s.info.Config.Labels['keel.session'], s.id, 'a container created for the session');
    assert.equal(s.claim, undefined, 'no claim record');
    assert.equal(s.provisioned?.image, unpooled);
    assert.match(s.output, /^keel-hello: hello pool from keel\n/);
    assert.doesNotMatch(s.output, /--pool-lease/);
    assert.deepEqual(await idle(), before, 'no pool container was claimed');
  });

  it('keel doctor lists the pools', async () => {
    const check = await poolsCheck(docker, testConfig(temporal.address, { KEEL_POOL_SIZE: '1', KEEL_POOL_IMAGES: `${pooled}=2` }));
    assert.equal(check.level, 'ok', check.detail);
    assert.equal(check.detail, `${base} ×1 (default image), ${pooled} ×2`);
  });

  it('a missing or contract-breaking image stops the worker at start, naming each image and its fix', async () => {
    await dockerBuild(join(fixtures, 'custom-image-root'), broken);
    const badHost = `${hostId}-bad`;
    const env = { KEEL_HOST_ID: badHost, KEEL_POOL_SIZE: '1', KEEL_POOL_IMAGES: `${missing}=1,${pooled}=1,${broken}` };
    const bad = (err: unknown): boolean => {
      assert.ok(err instanceof ServiceError, String(err));
      assert.equal(err.service, 'Sandbox image');
      assert.match(err.message, /KEEL_POOL_IMAGES names 2 images this host cannot pool:/);
      assert.ok(err.message.includes(`- ${missing} is not on this Docker host. Fix: build it here (npx keel image build --from <its Dockerfile> --tag ${missing}) or docker pull it, or remove ${missing} from KEEL_POOL_IMAGES`), err.message);
      assert.ok(err.message.includes(`- image ${broken} breaks Keel's sandbox contract:\n  - its USER is 'root'`), err.message);
      assert.ok(err.message.includes(`or remove ${broken} from KEEL_POOL_IMAGES`), err.message);
      assert.ok(!err.message.includes(`image ${pooled} `), 'the good image passed');
      return true;
    };
    await assert.rejects(createWorkers(testConfig(temporal.address, env), { role: 'sandbox' }), bad);
    const left = await docker.listContainers({ all: true, filters: { label: [`keel.host=${badHost}`] } });
    assert.deepEqual(left, [], 'no pool container was started');
    const checks = await docker.listContainers({ all: true, filters: { label: ['keel.host=keel-image-check'] } });
    assert.deepEqual(checks.map((c) => c.Names), [], 'no check container left');

    // What an operator sees: `keel worker` exits 2 with the same lines; `keel doctor`'s check says it too.
    const cli = await runCli(['worker', '--role', 'sandbox'], { ...env, TEMPORAL_ADDRESS: temporal.address, KEEL_LOG_FORMAT: 'text' });
    assert.equal(cli.code, 2, cli.stderr);
    assert.match(cli.stderr, new RegExp(`^keel: Sandbox image: KEEL_POOL_IMAGES names 2 images this host cannot pool:\\n- ${missing} is not on this Docker host`));
    const doctor = await poolsCheck(docker, testConfig(temporal.address, env));
    assert.equal(doctor.level, 'error');
    assert.match(doctor.detail, new RegExp(`a sandbox worker would refuse to start:\\n- ${missing} is not on this Docker host[\\s\\S]*- image ${broken} breaks`));
  });
});
