/**
 * `keel run` as a new user meets it, with its worker in the CLI process, on a real Temporal dev
 * server, Docker and Postgres: a model that is not configured fails before anything is
 * provisioned or recorded; an unreachable model server shows each retry as one status line with
 * no SDK log lines (those come with --verbose); Ctrl-C stops following and says how to go on.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import { KeelClient } from '../../client';
import { connect, getEvents, getSession, type Sql } from '../../store';
import { runCli } from '../helpers/cli';
import { ensureSandboxImage, sessionContainers, uniqueId } from '../helpers/env';
import { TestTemporal } from '../helpers/temporal';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://keel:keel@localhost:5432/keel_test';
const docker = new Docker();
let temporal: TestTemporal;
let sql: Sql;
let env: Record<string, string>;

before(async () => {
  await ensureSandboxImage(docker);
  temporal = await TestTemporal.start();
  sql = connect(DATABASE_URL);
  env = { TEMPORAL_ADDRESS: temporal.address, DATABASE_URL, KEEL_HOST_ID: uniqueId('cli-run-host'), KEEL_REAP_INTERVAL_SEC: '0', KEEL_GC_INTERVAL_SEC: '0', KEEL_LOG_LEVEL: '' };
});

after(async () => {
  await sql?.end({ timeout: 2 });
  await temporal?.down();
});

test('a model that is not configured fails before a sandbox or a session exists (exit 2, with the fix)', async () => {
  const id = uniqueId('cli-no-key');
  const r = await runCli(['run', 'say hi', '--model', 'anthropic:claude-sonnet-4-5', '--id', id], { ...env, ANTHROPIC_API_KEY: '' });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /ANTHROPIC_API_KEY/);
  assert.equal(await getSession(sql, id), undefined, 'no session recorded');
  assert.deepEqual(await getEvents(sql, id), []);
  assert.deepEqual(await sessionContainers(docker, id), [], 'no sandbox provisioned');
});

test('an unreachable model server: one status line per retry, no SDK log lines; Ctrl-C says how to go on', { timeout: 180_000 }, async () => {
  const id = uniqueId('cli-retry');
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '../helpers/cli-entry.ts'), 'run', 'say hi', '--model', 'openai-compatible:llama3', '--base-url', 'http://127.0.0.1:1/v1', '--id', id], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number>((r) => child.on('close', (code) => r(code ?? -1)));
  // Two retries told (attempts 1 and 2 failed), then interrupt.
  for (let i = 0; i < 1200 && (out.match(/↻ model call failed/g) ?? []).length < 2 && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 100));
  child.kill('SIGINT');
  const code = await exited;
  const client = await KeelClient.connect({ address: temporal.address });
  try {
    assert.equal(code, 130, out);
    assert.match(out, /↻ model call failed \(attempt 1 of \d+\): .*unavailable.*; next attempt in \d+ s/);
    assert.match(out, /↻ model call failed \(attempt 2 of \d+\)/);
    assert.doesNotMatch(out, /\[WARN\]|taskToken|Activity failed/, 'no SDK log lines without --verbose');
    assert.match(out, new RegExp(`session ${id} goes on durably.*keel wait ${id}.*keel cancel ${id}`));
    // No worker is left to answer a query; Temporal's own record shows the model call still scheduled.
    assert.ok((await client.activities(id)).some((a) => a.activity === 'callModel'), 'the session itself goes on');
  } finally {
    await client.cancel(id).catch(() => undefined);
    await client.close();
  }
});
