/**
 * MCP servers inside the sandbox (SessionSpec.mcpSandbox) on real Temporal, Docker and Postgres: the reference
 * git server from PyPI (`mcp-server-git`, installed offline into a custom image from wheels `pip download`
 * fetched) and a small fixture server with faults. The image is built once per recipe (its tag is a hash of
 * the base, the Dockerfile and the wheels), so later runs reuse it.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import type { Sql } from 'postgres';
import { KeelClient } from '../../client';
import { eventsOfType } from '../../common/events';
import type { SandboxMcpServer } from '../../common/mcp';
import type { ScriptTurn, SessionSpec } from '../../common/types';
import { buildCustomImage, customImageTag, resolveRecipe } from '../../host/custom-image';
import { defaultImageTag, imageExists } from '../../host/image';
import { getEvents } from '../../store';
import { connectDatabase } from '../../workers/services';
import { createWorkers, type KeelWorkers } from '../../workers/worker';
import { recordHistory } from '../helpers/history';
import { ensureSandboxImage, testConfig, uniqueId, workflowBundle } from '../helpers/env';
import { TestTemporal } from '../helpers/temporal';

const MCP_SERVER_GIT = 'mcp-server-git==2026.10.19';
const docker = new Docker();
const servers: Record<string, SandboxMcpServer> = {
  git: { command: 'python3', args: ['-m', 'mcp_server_git'] },
  fx: { command: 'keel-mcp-fixture', timeoutSec: 5 },
};

let temporal: TestTemporal;
let workers: KeelWorkers;
let running: Promise<void>;
let client: KeelClient;
let sql: Sql;
let image: string;

/** The test image's build context: the fixture folder plus the wheels (downloaded once into a cache folder). */
function recipe(): string {
  const wheels = join(tmpdir(), 'keel-test-mcp-git-wheels');
  if (!existsSync(wheels) || !readdirSync(wheels).some((f) => f.startsWith('mcp_server_git'))) {
    mkdirSync(wheels, { recursive: true });
    execFileSync('pip', ['download', '--quiet', '--dest', wheels, '--python-version', '3.11', '--only-binary=:all:', MCP_SERVER_GIT, 'pip'], { stdio: 'inherit' });
  }
  const context = join(tmpdir(), 'keel-test-mcp-image');
  mkdirSync(context, { recursive: true });
  cpSync(join(__dirname, '..', 'fixtures', 'custom-image-mcp'), context, { recursive: true });
  cpSync(wheels, join(context, 'wheels'), { recursive: true });
  return context;
}

before(async () => {
  await ensureSandboxImage(docker);
  const context = recipe();
  image = customImageTag(resolveRecipe(context), defaultImageTag());
  const t0 = Date.now();
  if (!(await imageExists(docker, image))) {
    await buildCustomImage(docker, { from: context, base: defaultImageTag(), tag: image, network: 'none' });
    console.log(`built ${image} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } else console.log(`reused ${image} (cached by its recipe hash)`);
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
});

const call = (name: string, input: Record<string, unknown> = {}): ScriptTurn => ({ toolCalls: [{ name, input }] });

test('the reference git server runs in the sandbox: status and log of the workspace, snapshots, restarted after a restore', { timeout: 300_000 }, async () => {
  const seed =
    'cd /workspace && git init -q && git config user.email t@example.com && git config user.name T && ' +
    "printf 'hello\\n' > hello.txt && git add -A && git commit -qm 'seed: first' && printf 'changed\\n' > hello.txt";
  const spec: SessionSpec = {
    task: 'mcp in the sandbox',
    model: {
      provider: 'scripted',
      model: 'test',
      script: [
        call('shell', { command: seed }),
        call('git__git_status', { repo_path: '/workspace' }),
        call('git__git_log', { repo_path: '/workspace' }),
        call('fx__write_note', { name: 'note.txt', text: 'from the server' }),
        call('fx__whoami'),
        call('shell', { command: 'touch /tmp/kill-now && sleep 8' }),
        call('fx__whoami'),
        call('git__git_diff_unstaged', { repo_path: '/workspace' }),
        { text: 'done' },
      ],
    },
    sandbox: { image },
    mcpSandbox: servers,
  };
  const id = uniqueId('mcpsb');
  await client.start(spec, { sessionId: id });
  // Kill the container while the sleep runs: the session restores it, and the servers must come back.
  let killed = false;
  for (let i = 0; i < 600 && !killed; i++) {
    const events = await getEvents(sql, id);
    const calls = eventsOfType(events, 'tool.call');
    if (calls.length >= 6) {
      const provisioned = eventsOfType(events, 'sandbox.provisioned')[0]!.data.containerId;
      await new Promise((r) => setTimeout(r, 1500));
      await docker.getContainer(provisioned).kill();
      killed = true;
    } else await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(killed, 'the session reached the sleep');
  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const events = await getEvents(sql, id);
  const results = eventsOfType(events, 'tool.result').map((e) => e.data);
  const byName = (n: string) => results.filter((r) => r.name === n);

  const status = byName('git__git_status')[0]!;
  assert.equal(status.ok, true, status.output);
  assert.match(status.output, /modified:\s+hello\.txt/);
  const log = byName('git__git_log')[0]!;
  assert.equal(log.ok, true, log.output);
  assert.match(log.output, /seed: first/);

  const note = byName('fx__write_note')[0]!;
  assert.equal(note.ok, true, note.output);
  assert.ok(note.snapshot, 'a call that changed files is followed by a snapshot');
  const [before, afterRestore] = byName('fx__whoami').map((r) => JSON.parse(r.output.split('\n')[0]!) as { uid: number; pid: number; cwd: string; calls: number });
  assert.deepEqual([before!.uid, before!.cwd], [1000, '/workspace'], 'the server runs as the commands\' user, in /workspace');
  assert.ok(before!.calls >= 2, 'the same process served the earlier calls');
  assert.ok(eventsOfType(events, 'sandbox.restored').length >= 1, 'the container was restored');
  assert.equal(afterRestore!.calls, 1, 'a new server process after the restore');
  assert.match(byName('fx__whoami')[1]!.output, /was started again for this call/);
  const diff = byName('git__git_diff_unstaged')[0]!;
  assert.equal(diff.ok, true, diff.output);
  assert.match(diff.output, /-hello\n\+changed/, 'the git server works after the restore');
  const contract = eventsOfType(events, 'session.contract')[0]?.data;
  assert.ok(JSON.stringify(contract).includes('git__git_status'), 'the contract lists the sandbox tools');
  await recordHistory(client.temporal, id, 'mcp-sandbox-session.json');
});

test('a sandbox server that crashes, hangs, answers malformed or stops reading gives error results, and the session goes on', { timeout: 240_000 }, async () => {
  const spec: SessionSpec = {
    task: 'faults',
    model: {
      provider: 'scripted',
      model: 'test',
      script: [
        call('fx__echo', { wrong: 1 }),
        call('fx__crash'),
        call('fx__echo', { text: 'after the crash' }),
        call('fx__hang'),
        call('fx__malformed'),
        call('fx__deaf'),
        // More than a pipe holds, to a server that no longer reads: the write itself must time out.
        call('fx__echo', { text: 'x'.repeat(300_000) }),
        call('shell', { command: 'sleep 30' }),
        call('fx__echo', { text: 'after everything' }),
        { text: 'done' },
      ],
    },
    sandbox: { image },
    mcpSandbox: { fx: servers.fx! },
  };
  // The shell's own timeout kills every process of the sandbox user, the server among them.
  (spec.model.script![7]!.toolCalls![0]!.input as Record<string, unknown>).timeoutSec = 1;
  const id = uniqueId('mcpsb-faults');
  await client.start(spec, { sessionId: id });
  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);
  const out = eventsOfType(await getEvents(sql, id), 'tool.result').map((e) => e.data);
  assert.equal(out[0]!.error, 'InvalidArguments', out[0]!.output);
  assert.equal(out[1]!.error, 'McpError');
  assert.match(out[1]!.output, /exited during the call \(exit code 3\).*crashing on purpose/);
  assert.equal(out[2]!.ok, true, out[2]!.output);
  assert.match(out[2]!.output, /^after the crash/);
  assert.equal(out[3]!.error, 'Timeout', out[3]!.output);
  assert.match(out[3]!.output, /did not answer within 5 s/);
  assert.equal(out[4]!.error, 'McpError', out[4]!.output);
  assert.match(out[4]!.output, /malformed/);
  assert.equal(out[5]!.ok, true, out[5]!.output);
  assert.equal(out[6]!.error, 'Timeout', out[6]!.output);
  assert.match(out[6]!.output, /did not answer within 5 s/);
  assert.equal(out[7]!.error, 'Timeout', out[7]!.output);
  assert.equal(out[8]!.ok, true, out[8]!.output);
  assert.match(out[8]!.output, /^after everything\n\[keel: the MCP server "fx" was started again/);
});

test('a sandbox server that does not start fails the session at start, naming it', { timeout: 120_000 }, async () => {
  const id = uniqueId('mcpsb-bad');
  await client.start(
    { task: 'bad', model: { provider: 'scripted', model: 'test', script: [{ text: 'never' }] }, sandbox: { image }, mcpSandbox: { nope: { command: 'no-such-mcp-server' } } },
    { sessionId: id },
  );
  const result = await client.result(id);
  assert.equal(result.status, 'failed');
  assert.match(result.error ?? '', /MCP server "nope" did not start \(no-such-mcp-server\)/);
});

test('bad mcpSandbox specs are refused before anything starts', async () => {
  const base = { task: 'x', model: { provider: 'scripted' as const, model: 't', script: [{ text: 'x' }] } };
  await assert.rejects(client.start({ ...base, mcpSandbox: { a__b: { command: 'x' } } }), /a name is 1-32 letters/);
  await assert.rejects(client.start({ ...base, mcpSandbox: { s: { command: 'x', env: { API_TOKEN: 'x' } } } }), /looks like a credential/);
  await assert.rejects(client.start({ ...base, mcp: ['s'], mcpSandbox: { s: { command: 'x' } } }), /also in mcp/);
});
