/**
 * The reaper removes containers of sessions that ended or never existed, and
 * leaves a running session's container alone.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import { KeelClient } from '../../client';
import { createSandboxActivities } from '../../activities/sandbox';
import { SandboxRuntime } from '../../host';
import { connectDocker } from '../../workers/services';
import { reapOnce } from '../../workers/reaper';
import { createWorkers, type KeelWorkers } from '../../workers/worker';
import { sessionContainers, testConfig, uniqueId, workflowBundle, scratchBlobs } from '../helpers/env';
import { ensureSandboxImage } from '../helpers/env';
import { TestTemporal } from '../helpers/temporal';

let temporal: TestTemporal;
let workers: KeelWorkers;
let running: Promise<void>;
let client: KeelClient;
let docker: Docker;
const hostId = uniqueId('reaper-host');

before(async () => {
  await ensureSandboxImage(new Docker());
  temporal = await TestTemporal.start();
  const config = testConfig(temporal.address, { KEEL_HOST_ID: hostId, KEEL_REAP_INTERVAL_SEC: '0' });
  workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  running = workers.run();
  client = await KeelClient.connect({ address: config.temporalAddress });
  docker = await connectDocker(config);
});

after(async () => {
  await workers?.shutdown();
  await running;
  await client?.close();
  await temporal?.down();
});

test('orphans are removed; a running session keeps its sandbox', async () => {
  const runtime = new SandboxRuntime(docker);
  const sandbox = createSandboxActivities({ runtime, blobs: scratchBlobs(), config: { hostId, hostQueue: `keel-sandbox-${hostId}` } });
  const orphan = uniqueId('orphan');
  await sandbox.provisionSandbox({ sessionId: orphan });

  const live = await client.start(
    {
      task: 'wait',
      model: { provider: 'scripted', model: 'reaper', script: [{ toolCalls: [{ name: 'sleep', input: { seconds: 600 } }] }, { text: 'done' }] },
      sandbox: { idleSuspendSec: 3600 },
    },
    { sessionId: uniqueId('live') },
  );
  while ((await client.status(live)).toolCalls === 0) await new Promise((r) => setTimeout(r, 100));

  const reaped = await reapOnce({ docker, client: client.temporal, hostId, minAgeSec: 0 });
  assert.deepEqual(reaped, [orphan]);
  assert.equal((await sessionContainers(docker, orphan)).length, 0, 'orphan removed');
  assert.equal((await sessionContainers(docker, live)).length, 1, 'running session untouched');

  await client.cancel(live, 'test over');
  assert.equal((await client.result(live)).status, 'cancelled');
  runtime.close();
});
