/**
 * Server restart test: the Temporal dev server (state in its SQLite file) is
 * stopped and started again mid-session; the session completes.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import Docker from 'dockerode';
import { after, before, test } from 'node:test';
import type { Sql } from 'postgres';
import { KeelClient } from '../../client';
import { getEvents } from '../../store';
import { eventsOfType } from '../../common/events';
import type { ScriptTurn, SessionResult } from '../../common/types';
import { connectDatabase } from '../../workers/services';
import { createWorkers, type KeelWorkers } from '../../workers/worker';
import { testConfig, uniqueId, workflowBundle } from '../helpers/env';
import { ensureSandboxImage } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { TestTemporal } from '../helpers/temporal';

let temporal: TestTemporal;
let workers: KeelWorkers;
let running: Promise<void>;
let sql: Sql;

before(async () => {
  await ensureSandboxImage(new Docker());
  temporal = await TestTemporal.start();
  const config = testConfig(temporal.address, { KEEL_HOST_ID: uniqueId('restart-host') });
  workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  running = workers.run();
  sql = await connectDatabase(config);
});

after(async () => {
  await workers?.shutdown();
  await running;
  await sql?.end({ timeout: 2 });
  await temporal?.down();
});

const script: ScriptTurn[] = [
  { toolCalls: [{ name: 'shell', input: { command: 'sleep 4; echo survived > /workspace/out.txt' } }] },
  { toolCalls: [{ name: 'read_file', input: { path: 'out.txt' } }] },
  { text: 'done' },
];

test('the session completes across a Temporal server restart', async () => {
  const config = testConfig(temporal.address);
  let client = await KeelClient.connect({ address: config.temporalAddress });
  const id = await client.start({ task: 'restart test', model: { provider: 'scripted', model: 'restart', script } }, { sessionId: uniqueId('restart') });
  await waitForEvent(sql, id, (e) => e.type === 'tool.call');
  await client.close();

  await temporal.down('SIGTERM');
  await new Promise((r) => setTimeout(r, 2000));
  await temporal.up();

  client = await KeelClient.connect({ address: config.temporalAddress });
  let result: SessionResult | undefined;
  for (let attempt = 0; !result; attempt++) {
    try {
      result = await client.result(id);
    } catch (err) {
      if (attempt > 20) throw err;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  await client.close();
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(sql, id);
  assert.deepEqual(events.map((e) => e.seq), events.map((_, i) => i + 1));
  const read = eventsOfType(events, 'tool.result').find((e) => e.data.name === 'read_file');
  assert.match(String(read?.data.output), /survived/);
});
