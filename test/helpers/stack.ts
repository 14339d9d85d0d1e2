/**
 * The whole stack for an integration test file: its own Temporal dev server,
 * workers of every role in this process (reaper and blob GC off), a client, the
 * test database and the blob store. `stop()` takes it all down.
 */
import { KeelClient } from '../../client';
import type { BlobStore } from '../../blobs';
import type { Sql } from '../../store';
import type { KeelConfig } from '../../workers/config';
import { connectDatabase, openBlobStore } from '../../workers/services';
import { createWorkers } from '../../workers/worker';
import { testConfig, uniqueId, workflowBundle } from './env';
import { TestTemporal } from './temporal';

export interface Stack {
  temporal: TestTemporal;
  config: KeelConfig;
  /** What a CLI child process needs to use the same stack. */
  env: Record<string, string>;
  client: KeelClient;
  sql: Sql;
  blobs: BlobStore;
  stop(): Promise<void>;
}

/** Start it; `hostPrefix` names this file's sandbox host (`KEEL_HOST_ID`); `extraEnv` is more worker configuration. */
export async function startStack(hostPrefix: string, extraEnv: Record<string, string> = {}): Promise<Stack> {
  const temporal = await TestTemporal.start();
  const env = { TEMPORAL_ADDRESS: temporal.address, KEEL_HOST_ID: uniqueId(hostPrefix), KEEL_REAP_INTERVAL_SEC: '0', KEEL_GC_INTERVAL_SEC: '0', ...extraEnv };
  const config = testConfig(temporal.address, env);
  const workers = await createWorkers(config, { workflowBundle: await workflowBundle() });
  const running = workers.run();
  const client = await KeelClient.connect({ address: config.temporalAddress });
  const sql = await connectDatabase(config);
  const store = openBlobStore(config);
  return {
    temporal,
    config,
    env,
    client,
    sql,
    blobs: store.blobs,
    async stop() {
      await workers.shutdown();
      await running;
      await client.close();
      await sql.end({ timeout: 2 });
      store.close();
      await temporal.down();
    },
  };
}
