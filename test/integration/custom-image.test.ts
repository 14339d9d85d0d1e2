/**
 * Custom sandbox images (`keel image build`): built on the real sandbox image with real Docker, checked
 * against Keel's contract, and used by a whole session on a real Temporal dev server and Postgres.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import type { Sql } from 'postgres';
import { KeelClient } from '../../client';
import { eventsOfType } from '../../common/events';
import type { ScriptTurn, SessionSpec } from '../../common/types';
import { buildCustomImage, ImageContractError, LABEL_BASE, listCustomImages } from '../../host/custom-image';
import { defaultImageTag, imageExists } from '../../host/image';
import { getEvents } from '../../store';
import { connectDatabase } from '../../workers/services';
import { createWorkers, type KeelWorkers } from '../../workers/worker';
import { runCli } from '../helpers/cli';
import { ensureSandboxImage, testConfig, uniqueId, workflowBundle } from '../helpers/env';
import { TestTemporal } from '../helpers/temporal';

const fixtures = join(__dirname, '..', 'fixtures');
const docker = new Docker();
const base = defaultImageTag();
const tag = `keel-custom-test:${uniqueId('it').toLowerCase()}`;

let temporal: TestTemporal;
let workers: KeelWorkers;
let running: Promise<void>;
let client: KeelClient;
let sql: Sql;

before(async () => {
  await ensureSandboxImage(docker);
  temporal = await TestTemporal.start();
  const config = testConfig(temporal.address, { KEEL_HOST_ID: uniqueId('host') });
  workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  running = workers.run();
  client = await KeelClient.connect({ address: config.temporalAddress });
  sql = await connectDatabase(config);
});

after(async () => {
  await workers?.shutdown();
  await running;
  await client?.close();
  await sql?.end({ timeout: 2 });
  await temporal?.down();
  await docker.getImage(tag).remove().catch(() => {});
});

const shell = (command: string): ScriptTurn => ({ toolCalls: [{ name: 'shell', input: { command } }] });

async function runShell(command: string, image?: string) {
  const spec: SessionSpec = {
    task: 'custom image test',
    model: { provider: 'scripted', model: 'test', script: [shell(command), { text: 'done' }] },
    ...(image ? { sandbox: { image } } : {}),
  };
  const id = await client.start(spec, { sessionId: uniqueId('img') });
  const result = await client.result(id);
  const events = await getEvents(sql, id);
  const out = eventsOfType(events, 'tool.result')[0]?.data;
  return { result, events, out };
}

/** Containers and scratch tags the contract check leaves behind: none, pass or fail. */
async function checkLeftovers(): Promise<void> {
  const containers = await docker.listContainers({ all: true, filters: JSON.stringify({ label: ['keel.host=keel-image-check'] }) });
  assert.deepEqual(containers.map((c) => c.Names), [], 'no check container left');
  const scratch = await docker.listImages({ filters: JSON.stringify({ reference: ['keel-image-check'] }) });
  assert.deepEqual(scratch.map((i) => i.RepoTags), [], 'no scratch tag left');
}

test('a custom image adds a tool on top of the sandbox image, and a session run on it uses the tool', async () => {
  const built = await buildCustomImage(docker, { from: join(fixtures, 'custom-image'), base, tag, network: 'none' });
  assert.equal(built.tag, tag);
  const info = await docker.getImage(tag).inspect();
  assert.equal(info.Config.Labels?.[LABEL_BASE], base, 'labelled with its base');
  const baseInfo = await docker.getImage(base).inspect();
  assert.equal(info.Config.Labels?.['keel.recipe'], baseInfo.Config.Labels?.['keel.recipe'], "the base's executor version");
  assert.ok((await listCustomImages(docker)).some((i) => i.tags.includes(tag) && i.base === base), 'keel image list shows it');
  await checkLeftovers();

  const custom = await runShell('keel-hello world; id -u', tag);
  assert.equal(custom.result.status, 'completed', custom.result.error);
  assert.equal(custom.out?.exitCode, 0, String(custom.out?.output));
  assert.match(String(custom.out?.output), /^keel-hello: hello world from keel\n1000\n/);
  assert.equal(eventsOfType(custom.events, 'sandbox.provisioned')[0]?.data.image, tag, 'the session ran on the custom image');

  // The same command on the default image: the tool is not there (so the custom image is what provided it).
  const plain = await runShell('keel-hello world');
  assert.equal(plain.result.status, 'completed', plain.result.error);
  assert.equal(plain.out?.exitCode, 127, String(plain.out?.output));
  assert.equal(eventsOfType(plain.events, 'sandbox.provisioned')[0]?.data.image, base);
});

test('a Dockerfile that leaves USER root is refused with the reason, and gets no tag', async () => {
  const refused = `keel-custom-test:${uniqueId('root').toLowerCase()}`;
  await assert.rejects(
    buildCustomImage(docker, { from: join(fixtures, 'custom-image-root', 'Dockerfile'), base, tag: refused, network: 'none' }),
    (err: unknown) => err instanceof ImageContractError && /its USER is 'root'.*uid 1000.*USER keel/.test(err.message) && err.message.includes(refused),
  );
  assert.equal(await imageExists(docker, refused), false, 'the refused image has no tag');
  await checkLeftovers();

  // Through the CLI: exit 2 and the same reason, in one message.
  const cli = await runCli(['image', 'build', '--from', join(fixtures, 'custom-image-root'), '--tag', refused, '--network', 'none']);
  assert.equal(cli.code, 2, cli.stderr);
  assert.match(cli.stderr, /keel: image keel-custom-test:\S+ breaks Keel's sandbox contract:\n {2}- its USER is 'root'/);
  assert.equal(await imageExists(docker, refused), false);
});

test('an image whose executor is gone is refused by the lockdown check, with what the container said', async () => {
  const refused = `keel-custom-test:${uniqueId('noexec').toLowerCase()}`;
  await assert.rejects(
    buildCustomImage(docker, { from: join(fixtures, 'custom-image-no-executor'), base, tag: refused, network: 'none' }),
    (err: unknown) => err instanceof ImageContractError && /executor did not start under Keel's lockdown[\s\S]*executor\.py/.test(err.message),
  );
  assert.equal(await imageExists(docker, refused), false);
  await checkLeftovers();
});
