/**
 * `keel/client` as another Node project uses it: pack the package, install the
 * tarball into a fresh project, import the client there, type-check a use of it,
 * and show from `require.cache` that nothing of the worker side was loaded.
 *
 *   node --import tsx --test test/integration/client-package.test.ts
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { keelRoot } from '../../host';

const root = keelRoot();
const work = mkdtempSync(join(tmpdir(), 'keel-client-pkg-'));
const app = join(work, 'app');
const npm = (args: string[], cwd: string): string => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** Modules a client must never load: the worker runtime, Docker, Postgres, S3, model SDKs, and Keel's worker-side folders. */
const WORKER_SIDE = /node_modules\/(@temporalio\/worker|dockerode|postgres|@aws-sdk|ai|@ai-sdk)\/|\/keel\/dist\/(workers|activities|host|store|blobs|cli)\//;

before(
  () => {
    // The build `npm test` set up may be older than the sources of this run.
    execFileSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
    const [packed] = JSON.parse(npm(['pack', '--json', '--pack-destination', work], root)) as Array<{ filename: string }>;
    assert.ok(packed, 'npm pack made a tarball');
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'keel-client-consumer', version: '1.0.0', private: true }));
    npm(['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', join(work, packed.filename)], app);
  },
  { timeout: 600_000 },
);

after(() => rmSync(work, { recursive: true, force: true }));

test('require("keel/client") loads the client and nothing of the worker side', () => {
  const script = `
    const client = require('keel/client');
    const loaded = Object.keys(require.cache);
    process.stdout.write(JSON.stringify({
      exports: Object.keys(client).sort(),
      connect: typeof client.KeelClient.connect,
      id: client.newSessionId(),
      loaded,
    }));`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: app, encoding: 'utf8' })) as {
    exports: string[];
    connect: string;
    id: string;
    loaded: string[];
  };
  for (const name of ['KeelClient', 'ServiceError', 'SessionError', 'newSessionId', 'parseModel', 'validateSpec']) assert.ok(out.exports.includes(name), `exports ${name}`);
  assert.equal(out.connect, 'function');
  assert.match(out.id, /^s-\d{8}-\d{6}-[0-9a-f]{6}$/);
  assert.ok(out.loaded.some((p) => p.includes('@temporalio/client')), 'the Temporal client is what it loads');
  const workerSide = out.loaded.filter((p) => WORKER_SIDE.test(p));
  assert.deepEqual(workerSide, [], 'no worker-side module in require.cache');
});

test('only keel/client (and keel/client/workspace) is exported, and a bad spec is refused before any server is needed', () => {
  const script = `
    let deep = 'loaded';
    try { require('keel/dist/workers/worker'); } catch (e) { deep = e.code; }
    const { validateSpec, SessionError } = require('keel/client');
    let refused = '';
    try { validateSpec({ task: '', model: { provider: 'scripted', model: 'x', script: [{}] } }); } catch (e) { refused = e instanceof SessionError ? e.message : 'other'; }
    process.stdout.write(JSON.stringify({ deep, refused }));`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: app, encoding: 'utf8' })) as { deep: string; refused: string };
  assert.equal(out.deep, 'ERR_PACKAGE_PATH_NOT_EXPORTED');
  assert.match(out.refused, /needs a task/);
});

test('the type declarations check a caller: right arguments pass, wrong ones fail', () => {
  const tsc = join(root, 'node_modules', '.bin', 'tsc');
  const check = (code: string): { ok: boolean; output: string } => {
    writeFileSync(join(app, 'use.ts'), code);
    try {
      const output = execFileSync(tsc, ['--noEmit', '--strict', '--skipLibCheck', '--module', 'node16', '--moduleResolution', 'node16', '--target', 'es2022', 'use.ts'], {
        cwd: app,
        encoding: 'utf8',
      });
      return { ok: true, output };
    } catch (err) {
      return { ok: false, output: String((err as { stdout?: string }).stdout) };
    }
  };
  const good = check(`
    import { KeelClient, type SessionResult } from 'keel/client';
    export async function run(): Promise<SessionResult> {
      const keel = await KeelClient.connect({ address: 'localhost:7233' });
      const id = await keel.start({ task: 'fix it', model: { provider: 'anthropic', model: 'claude-sonnet-4-5' }, maxSteps: 5 });
      return keel.result(id);
    }`);
  assert.ok(good.ok, good.output);
  const bad = check(`
    import { KeelClient } from 'keel/client';
    export async function run(): Promise<void> {
      const keel = await KeelClient.connect();
      await keel.start({ task: 'fix it', model: { provider: 'gpt', model: 'x' } });
    }`);
  assert.equal(bad.ok, false, 'an unknown provider is a type error');
  assert.match(bad.output, /'"gpt"' is not assignable/);
});

test('keel/client/workspace stores a seed a spec can name, and keel/client does not load it', () => {
  const script = `
    const { mkdtempSync, writeFileSync } = require('node:fs');
    const { join } = require('node:path');
    const { tmpdir } = require('node:os');
    const before = Object.keys(require.cache).filter((p) => p.includes('/dist/workspace/')).length;
    require('keel/client');
    const afterClient = Object.keys(require.cache).filter((p) => p.includes('/dist/workspace/')).length;
    const { uploadWorkspace, DirBlobStore, WorkspaceError } = require('keel/client/workspace');
    const { validateSpec } = require('keel/client');
    const dir = mkdtempSync(join(tmpdir(), 'seed-'));
    writeFileSync(join(dir, 'a.txt'), 'a');
    const blobs = new DirBlobStore(mkdtempSync(join(tmpdir(), 'blobs-')));
    (async () => {
      const workspace = await uploadWorkspace(dir, blobs);
      validateSpec({ task: 't', model: { provider: 'scripted', model: 'x', script: [{}] }, workspace });
      let missing = '';
      try { await uploadWorkspace(join(dir, 'nope'), blobs); } catch (e) { missing = e instanceof WorkspaceError ? e.message : 'other'; }
      process.stdout.write(JSON.stringify({ before, afterClient, workspace, missing, stored: (await blobs.getManifest(workspace.snapshot)) !== undefined }));
    })();`;
  const out = JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: app, encoding: 'utf8' })) as {
    before: number;
    afterClient: number;
    workspace: { snapshot: string; files: number; source: string };
    missing: string;
    stored: boolean;
  };
  assert.equal(out.afterClient, 0, 'keel/client loads nothing of the workspace code');
  assert.match(out.workspace.snapshot, /^[0-9a-f]{64}$/);
  assert.equal(out.workspace.files, 1);
  assert.match(out.workspace.source, /^dir /);
  assert.equal(out.stored, true);
  assert.match(out.missing, /no such file or directory/);
});
