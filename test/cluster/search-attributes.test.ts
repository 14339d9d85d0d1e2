/**
 * The production server registers Keel's search attributes: `scripts/temporal-server.sh namespace` (which the
 * cluster suite and an operator run after the server starts) creates KeelTenant, KeelStatus and KeelModel as
 * Keyword attributes on the SQL visibility store, so sessions on a cluster carry them as they do on `keel dev`.
 * Running it a second time changes nothing (it is idempotent). Needs KEEL_TEST_TEMPORAL=cluster.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { SEARCH_ATTRIBUTES } from '../../common/search-attributes';
import { TestTemporal } from '../helpers/temporal';

let server: TestTemporal;

before(async () => {
  assert.equal(process.env.KEEL_TEST_TEMPORAL, 'cluster', 'run with KEEL_TEST_TEMPORAL=cluster (npm run test:cluster)');
  server = await TestTemporal.start();
});

after(async () => {
  await server?.down();
});

async function registered(): Promise<Record<string, unknown>> {
  const connection = await Connection.connect({ address: server.address });
  try {
    const answer = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
    return answer.customAttributes ?? {};
  } finally {
    await connection.close();
  }
}

test("the Postgres-backed server gets Keel's search attributes as Keyword, idempotently", { timeout: 300_000 }, async () => {
  const keyword = temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
  const first = await registered();
  for (const { name } of SEARCH_ATTRIBUTES) assert.equal(first[name], keyword, `${name} is not registered as Keyword`);
  const script = join(__dirname, '..', '..', 'scripts', 'temporal-server.sh');
  execFileSync('bash', [script, 'namespace'], { env: { ...process.env, FRONTEND_GRPC_PORT: String(server.port) }, stdio: ['ignore', 'ignore', 'inherit'] });
  assert.deepEqual(await registered(), first);
});
