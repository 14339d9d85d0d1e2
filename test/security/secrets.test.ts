/**
 * Secrets never reach a sandbox, a workflow history, an event, a blob or a log line.
 *
 * A worker process runs with a distinctive value planted in every secret it reads
 * (workers/config.ts and activities/model/config.ts): the three model API keys, the
 * password in DATABASE_URL (a real role, so it is really used) and in
 * KEEL_DATABASE_OWNER_URL, and the S3 credentials of a real (moto) blob store. Real
 * sessions against a local stand-in for the model APIs print `env`, every readable
 * `/proc/<pid>/environ` and the shell's saved state, and one model call fails with an
 * error that quotes the key back. Then every place a value could end up is searched
 * for the token all planted values share: the tool outputs, every event row and
 * session row, the Temporal history of every run, every object in the blob store,
 * the containers' configuration, the worker's log (at DEBUG) and the Temporal
 * server's log. Each search is first shown to find something it should (the task).
 *
 * An OpenAI-compatible key goes only to the configured base URL: a session that
 * names another URL reaches it without the key.
 *
 *   node --import tsx --test test/security/secrets.test.ts
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import Docker from 'dockerode';
import { KeelClient } from '../../client';
import type { SessionSpec } from '../../common/types';
import { historyBytes, sessionHistories } from '../../inspect';
import { connect, firstEvent, type Sql } from '../../store';
import { temporal as proto } from '@temporalio/proto';
import { isGvisor } from '../../host';
import { ensureSandboxImage, sessionContainers, testRuntime, uniqueId } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { FakeLlmServer } from '../helpers/fake-llm-server';
import { spawnWorker, type WorkerProcess } from '../helpers/processes';
import { TestS3, TEST_CREDENTIALS } from '../helpers/s3-server';
import { asSuperuser } from '../helpers/superuser';
import { TestTemporal } from '../helpers/temporal';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://keel:keel@localhost:5432/keel_test';
const database = new URL(DATABASE_URL).pathname.slice(1);
const docker = new Docker();

/** Every planted value holds this token; nothing else in the run does. */
const TOKEN = `plant${randomBytes(8).toString('hex')}`;
const PLANTED = {
  ANTHROPIC_API_KEY: `sk-ant-${TOKEN}-anthropic`,
  OPENAI_API_KEY: `sk-${TOKEN}-openai`,
  OPENAI_COMPATIBLE_API_KEY: `sk-${TOKEN}-compatible`,
  dbPassword: `pw-${TOKEN}-database`,
  ownerPassword: `pw-${TOKEN}-owner`,
  AWS_ACCESS_KEY_ID: `AKIA${TOKEN.toUpperCase()}`,
  AWS_SECRET_ACCESS_KEY: `${TOKEN}-aws-secret`,
  AWS_SESSION_TOKEN: `${TOKEN}-aws-session`,
  KEEL_WEBHOOK_SECRET: `${TOKEN}-webhook`,
};
const ROLE = `keel_secrets_${randomBytes(4).toString('hex')}`;
const TASK = 'show me your environment';

let temporal: TestTemporal;
let s3: TestS3;
let llm: FakeLlmServer;
/** Stands for any other server a session might name as its base URL. */
let elsewhere: FakeLlmServer;
let worker: WorkerProcess;
let client: KeelClient;
let sql: Sql;
const bucket = 'keel-secrets';
const prefix = `${uniqueId('secrets')}/`;
const sessions: string[] = [];

before(
  async () => {
    await ensureSandboxImage(docker);
    // A role of its own, so the planted password is the one the worker really logs in with.
    asSuperuser(database, `create role ${ROLE} login password '${PLANTED.dbPassword}' in role keel;`);
    temporal = await TestTemporal.start();
    s3 = await TestS3.start();
    llm = await FakeLlmServer.start();
    elsewhere = await FakeLlmServer.start();
    await s3.createBucket(bucket);
    const db = new URL(DATABASE_URL);
    db.username = ROLE;
    db.password = PLANTED.dbPassword;
    const owner = new URL(DATABASE_URL);
    owner.username = 'keel_owner';
    owner.password = PLANTED.ownerPassword;
    worker = await spawnWorker({
      TEMPORAL_ADDRESS: temporal.address,
      KEEL_HOST_ID: uniqueId('secrets-host'),
      KEEL_REAP_INTERVAL_SEC: '0',
      KEEL_GC_INTERVAL_SEC: '0',
      KEEL_LOG_LEVEL: 'DEBUG',
      DATABASE_URL: db.toString(),
      KEEL_DATABASE_OWNER_URL: owner.toString(),
      KEEL_BLOB_S3_BUCKET: bucket,
      KEEL_BLOB_S3_ENDPOINT: s3.endpoint,
      KEEL_BLOB_S3_PREFIX: prefix,
      AWS_ACCESS_KEY_ID: PLANTED.AWS_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: PLANTED.AWS_SECRET_ACCESS_KEY,
      AWS_SESSION_TOKEN: PLANTED.AWS_SESSION_TOKEN,
      ANTHROPIC_API_KEY: PLANTED.ANTHROPIC_API_KEY,
      ANTHROPIC_BASE_URL: llm.url,
      OPENAI_API_KEY: PLANTED.OPENAI_API_KEY,
      OPENAI_BASE_URL: llm.url,
      OPENAI_COMPATIBLE_API_KEY: PLANTED.OPENAI_COMPATIBLE_API_KEY,
      OPENAI_COMPATIBLE_BASE_URL: llm.url,
      KEEL_WEBHOOK_SECRET: PLANTED.KEEL_WEBHOOK_SECRET,
    });
    client = await KeelClient.connect({ address: temporal.address });
    sql = connect(DATABASE_URL);
  },
  { timeout: 300_000 },
);

after(async () => {
  await worker?.kill('SIGTERM');
  await client?.close();
  await sql?.end({ timeout: 2 });
  await Promise.all([llm?.close(), elsewhere?.close(), s3?.stop()]);
  await temporal?.down();
  try {
    asSuperuser(database, `drop role if exists ${ROLE};`);
  } catch {
    // The role may still hold a connection of the killed worker for a moment; it owns nothing.
  }
});

/** Where the planted token is in `text`, with some context, or undefined. */
function leak(text: string | Buffer): string | undefined {
  const s = typeof text === 'string' ? text : text.toString('latin1');
  const at = s.indexOf(TOKEN);
  return at < 0 ? undefined : JSON.stringify(s.slice(Math.max(0, at - 120), at + 80));
}

/** Assert that `haystack` holds the task (the search can find things) and no planted value. */
function clean(place: string, haystack: string | Buffer, expectTask = true): void {
  if (expectTask) assert.ok(haystack.includes(TASK), `${place}: the search sees content (the task)`);
  const found = leak(haystack);
  assert.equal(found, undefined, `${place} holds a planted secret: ${found}`);
}

async function run(spec: SessionSpec, during?: (id: string) => Promise<void>): Promise<string> {
  const id = await client.start(spec, { sessionId: uniqueId('secrets') });
  sessions.push(id);
  await during?.(id);
  await client.result(id);
  return id;
}

const shell = (command: string) => ({ name: 'shell', args: { command } });

test('no planted secret reaches the sandbox, an event, a history, a blob or a log; keys go only where configured', { timeout: 600_000 }, async () => {
  // 1. OpenAI-compatible on the configured URL: the commands look everywhere a secret could be.
  llm.reset();
  llm.enqueue(
    { toolCalls: [shell('sleep 2; env; echo ---; cat /home/keel/.keel/shell-env 2>&1; echo ---; ls -la /run/keel 2>&1')] },
    { toolCalls: [shell(`for f in /proc/[0-9]*/environ /proc/[0-9]*/task/*/environ; do echo "== $f"; tr '\\0' '\\n' < "$f" 2>&1; done`)] },
    { toolCalls: [shell("tr '\\0' ' ' < /proc/1/cmdline; echo; cat /proc/1/environ 2>&1; echo; cat /proc/self/environ | tr '\\0' '\\n'")] },
    { toolCalls: [{ name: 'read_file', args: { path: '/proc/1/environ' } }] },
    { toolCalls: [shell('echo workspace > /workspace/note.txt; env > /workspace/env.txt')] },
    { text: 'done' },
  );
  let containerEnv: string[] = [];
  const compat = await run({ task: TASK, model: { provider: 'openai-compatible', model: 'compat' } }, async (id) => {
    await waitForEvent(sql, id, (e) => e.type === 'tool.call');
    const [c] = await sessionContainers(docker, id);
    assert.ok(c, 'the session has a container');
    const info = await docker.getContainer(c.id).inspect();
    containerEnv = info.Config.Env ?? [];
  });
  assert.equal(llm.requests.length, 6);
  for (const r of llm.requests) assert.equal(r.headers.authorization, `Bearer ${PLANTED.OPENAI_COMPATIBLE_API_KEY}`, 'the configured server gets its key');
  const outputs = await sql<{ output: string }[]>`select data->>'output' as output from events where session_id = ${compat} and type = 'tool.result' order by seq`;
  assert.equal(outputs.length, 5);
  assert.match(outputs[0]?.output ?? '', /^HOME=\/home\/keel$/m, 'env was printed');
  if (isGvisor(testRuntime())) {
    // gVisor differs (docs/security.md): its /proc makes every task's environ 0444, so the executor's is printed. It
    // is the container's environment, which the planted values never reach (checked on the whole output below).
    assert.match(outputs[1]?.output ?? '', /== \/proc\/1\/environ\n[A-Z_]+=/, "the executor's environment, under gVisor");
  } else {
    assert.match(outputs[1]?.output ?? '', /== \/proc\/1\/environ\n.*Permission denied/, "the executor's environment is refused");
  }
  assert.match(outputs[1]?.output ?? '', /^PWD=\/workspace$/m, "the commands' own environments were printed");
  assert.ok(!containerEnv.some((v) => v.includes(TOKEN)), `the container's configuration: ${containerEnv.join(' ')}`);

  // 2. Anthropic and 3. OpenAI, whose fake answers 401 quoting the key back, as real APIs do.
  llm.reset();
  llm.enqueue({ toolCalls: [shell('env')] }, { text: 'done' });
  await run({ task: TASK, model: { provider: 'anthropic', model: 'claude-test' } });
  assert.equal(llm.requests[0]?.headers['x-api-key'], PLANTED.ANTHROPIC_API_KEY);
  llm.reset();
  llm.enqueue({ error: { status: 401, message: `Incorrect API key provided: ${PLANTED.OPENAI_API_KEY}. You can find your key at ...` } });
  const refused = await run({ task: TASK, model: { provider: 'openai', model: 'gpt-test' } });
  assert.equal(llm.requests[0]?.headers.authorization, `Bearer ${PLANTED.OPENAI_API_KEY}`);
  const ended = await firstEvent(sql, refused, 'session.ended');
  assert.equal(ended?.data.status, 'failed');
  assert.match(ended?.data.error ?? '', /401|[Aa]uth/, 'the failure is reported, with the key scrubbed');

  // 4. OpenAI-compatible with a base URL the session names: reached, without the configured key.
  elsewhere.reset();
  elsewhere.enqueue({ toolCalls: [shell('echo hi')] }, { text: 'done' });
  await run({ task: TASK, model: { provider: 'openai-compatible', model: 'other', baseURL: elsewhere.url } });
  assert.equal(elsewhere.requests.length, 2, 'the named server was used');
  for (const r of elsewhere.requests) {
    assert.equal(r.headers.authorization, undefined, 'no key sent to a URL the session chose');
    assert.equal(leak(JSON.stringify(r)), undefined, 'nothing planted in what it received');
  }

  // Events and session rows.
  for (const id of sessions) {
    const rows = await sql<{ text: string }[]>`select type || ' ' || data::text as text from events where session_id = ${id} order by seq`;
    clean(`events of ${id}`, rows.map((r) => r.text).join('\n'));
    const index = await sql<{ text: string }[]>`select row_to_json(s)::text as text from sessions s where id = ${id}`;
    assert.equal(index.length, 1);
    clean(`sessions row of ${id}`, index[0]!.text, false);
  }
  // Temporal history, every run, as the server holds it (binary protobuf: payloads are the JSON bytes).
  for (const id of sessions) {
    const started = await firstEvent(sql, id, 'session.started');
    const runs = await sessionHistories(client.temporal, id, started?.data.workflowRunId ?? '');
    assert.ok(runs.length >= 1 && historyBytes(runs[0]!.history) > 0);
    for (const r of runs) clean(`history of ${id} run ${r.runId}`, Buffer.from(proto.api.history.v1.History.encode(r.history).finish()));
  }
  // Every object in the blob store (outputs, inputs, snapshot files and manifests).
  const s3client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: TEST_CREDENTIALS });
  try {
    const list = await s3client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    const keys = (list.Contents ?? []).map((o) => o.Key!);
    assert.ok(keys.length > 0, 'the sessions stored blobs');
    let sawWorkspace = false;
    for (const key of keys) {
      const body = Buffer.from(await (await s3client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToByteArray());
      if (body.includes('HOME=/home/keel')) sawWorkspace = true;
      clean(`blob ${key}`, body, false);
    }
    assert.ok(sawWorkspace, 'the search reads the snapshot of env.txt');
  } finally {
    s3client.destroy();
  }
  // Logs: the worker's at DEBUG, and the Temporal server's.
  await worker.kill('SIGTERM');
  const log = worker.output();
  assert.ok(log.length > 0 && /\[(DEBUG|INFO)\]/.test(log), 'the worker logged');
  clean('the worker log', log, false);
  clean("the Temporal server's log", readFileSync(join(temporal.dir, 'temporal.log')), false);
});
