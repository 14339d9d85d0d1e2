/**
 * Work in and out, as a person does it with the CLI, on a real Temporal dev server, Docker and
 * Postgres: a session seeded from a local git repository edits a file and commits in its sandbox;
 * `keel files` exports the final workspace from the snapshots alone, and the export holds what the
 * session reported (file contents, git log). Bad inputs fail in one line that names the problem.
 * With KEEL_RECORD_HISTORY=1 it records the seeded session's history for the replay test.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import { KeelClient } from '../../client';
import { connect, getEvents, type Sql } from '../../store';
import { runCli } from '../helpers/cli';
import { ensureSandboxImage, sessionContainers, uniqueId } from '../helpers/env';
import { recordHistory } from '../helpers/history';
import { TestTemporal } from '../helpers/temporal';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://keel:keel@localhost:5432/keel_test';
const docker = new Docker();
let temporal: TestTemporal;
let sql: Sql;
let env: Record<string, string>;
const tmp = (p: string): string => mkdtempSync(join(tmpdir(), `keel-wsi-${p}-`));
const git = (cwd: string, ...args: string[]): string =>
  execFileSync('git', ['-c', 'user.name=person', '-c', 'user.email=person@example.com', '-c', 'init.defaultBranch=main', ...args], { cwd, encoding: 'utf8' }).trim();

before(async () => {
  await ensureSandboxImage(docker);
  temporal = await TestTemporal.start();
  sql = connect(DATABASE_URL);
  env = {
    TEMPORAL_ADDRESS: temporal.address,
    DATABASE_URL,
    KEEL_BLOB_DIR: tmp('blobs'),
    KEEL_HOST_ID: uniqueId('ws-host'),
    KEEL_REAP_INTERVAL_SEC: '0',
    KEEL_GC_INTERVAL_SEC: '0',
    KEEL_LOG_LEVEL: '',
  };
});

after(async () => {
  await sql?.end({ timeout: 2 });
  await temporal?.down();
});

function sourceRepo(): string {
  const dir = tmp('repo');
  git(dir, 'init', '-q');
  writeFileSync(join(dir, 'hello.txt'), 'hello from the host\n');
  writeFileSync(join(dir, 'notes.md'), '# notes\n');
  git(dir, 'add', '-A');
  git(dir, 'commit', '-qm', 'seed: first');
  writeFileSync(join(dir, 'notes.md'), '# notes\n\nsecond\n');
  git(dir, 'commit', '-qam', 'seed: second');
  return dir;
}

test('seeded from a git repo, the session edits and commits; keel files exports what it reported', { timeout: 240_000 }, async () => {
  const repo = sourceRepo();
  const id = uniqueId('ws-git');
  const script = join(tmp('script'), 'turns.json');
  const commit = "git -c user.name=agent -c user.email=agent@keel commit -qam 'agent: edit hello'";
  writeFileSync(
    script,
    JSON.stringify([
      { text: 'Looking at the seed.', toolCalls: [{ name: 'shell', input: { command: 'cd /workspace && git log --format=%s && cat hello.txt' } }] },
      {
        text: 'Editing and committing.',
        toolCalls: [{ name: 'shell', input: { command: `cd /workspace && printf 'edited in the sandbox\\n' > hello.txt && ${commit} && git log --format='%H %s' && cat hello.txt` } }],
      },
      { text: 'Done.' },
    ]),
  );
  const r = await runCli(['run', 'edit hello.txt and commit', '--script', script, '--workspace', repo, '--id', id, '--json'], env);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const result = JSON.parse(r.stdout) as { status: string; steps: number };
  assert.equal(result.status, 'completed');

  const events = await getEvents(sql, id);
  const seed = events.find((e) => e.type === 'sandbox.snapshot' && e.data.reason === 'seed');
  assert.ok(seed && seed.type === 'sandbox.snapshot', 'the seed is recorded as the first snapshot');
  const provisioned = events.find((e) => e.type === 'sandbox.provisioned');
  assert.ok(provisioned && seed.seq < provisioned.seq, 'seeded before the sandbox exists');
  const outputs = events.flatMap((e) => (e.type === 'tool.result' ? [e.data] : []));
  assert.equal(outputs.length, 2);
  assert.equal(outputs[0]!.ok, true, outputs[0]!.output);
  assert.match(outputs[0]!.output, /seed: second\nseed: first\nhello from the host/, 'the sandbox starts with the repo, history included');
  assert.equal(outputs[1]!.ok, true, outputs[1]!.output);
  assert.ok(outputs[1]!.snapshot, 'the edit and commit made a snapshot');
  const reportedLog = outputs[1]!.output.trim().split('\n').slice(0, 3);
  assert.match(reportedLog[0]!, /^[0-9a-f]{40} agent: edit hello$/);

  // The final workspace, from the snapshots alone.
  const out = join(tmp('out'), 'final');
  const files = await runCli(['files', id, '--out', out], env);
  assert.equal(files.code, 0, files.stderr);
  assert.equal(readFileSync(join(out, 'hello.txt'), 'utf8'), 'edited in the sandbox\n');
  assert.equal(readFileSync(join(out, 'notes.md'), 'utf8'), '# notes\n\nsecond\n');
  assert.deepEqual(git(out, 'log', '--format=%H %s').split('\n'), reportedLog, 'the exported history is the one the session reported');
  assert.equal(git(out, 'status', '--porcelain'), '', 'the export is a clean checkout of the agent\'s commit');
  assert.equal(git(out, 'show', '--format=%an', '--no-patch', 'HEAD'), 'agent');

  // As a tar, after step 1 (the seed, unchanged by a read-only step).
  const tarFile = join(tmp('out'), 'step1.tar');
  const t = await runCli(['files', id, '--step', '1', '--out', tarFile], env);
  assert.equal(t.code, 0, t.stderr);
  const unpacked = tmp('unpacked');
  execFileSync('tar', ['-xf', tarFile, '-C', unpacked]);
  assert.equal(readFileSync(join(unpacked, 'hello.txt'), 'utf8'), 'hello from the host\n');
  assert.equal(git(unpacked, 'log', '--format=%s'), 'seed: second\nseed: first');

  // The change from the seed, as a patch that applies to the source repository.
  const d = await runCli(['files', id, '--git-diff'], env);
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /^diff --git a\/hello.txt b\/hello.txt$/m);
  assert.match(d.stdout, /^-hello from the host$/m);
  assert.match(d.stdout, /^\+edited in the sandbox$/m);
  assert.doesNotMatch(d.stdout, /\.git\//);
  const patch = join(tmp('patch'), 'p.diff');
  writeFileSync(patch, d.stdout);
  git(repo, 'apply', '--check', patch);

  // `keel diff` compares the agent's step with the seed, not with an empty sandbox; `keel show` names the seed.
  // (Step 1 may have its own snapshot: the shell's state in /home/keel changed with its `cd`.)
  type Diff = { before?: string; after?: string; modified: Array<{ after: { path: string } }>; added: Array<{ path: string }> };
  const diffOf = async (step: number): Promise<Diff> => {
    const r = await runCli(['diff', id, '--step', String(step), '--json'], env);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as Diff;
  };
  const first = await diffOf(1);
  const second = await diffOf(2);
  if (first.after) assert.equal(first.before, seed.data.id, 'step 1 is compared with the seed');
  assert.equal(second.before, first.after ?? seed.data.id);
  const seedFiles = ['/workspace/hello.txt', '/workspace/notes.md', '/workspace/.git/HEAD', '/workspace/.git/config'];
  for (const d of [first, second]) assert.ok(!d.added.some((a) => seedFiles.includes(a.path)), `seed files are not reported as added: ${JSON.stringify(d.added)}`);
  assert.ok(second.modified.some((m) => m.after.path === '/workspace/hello.txt'), JSON.stringify(second));
  const show = await runCli(['show', id], env);
  assert.match(show.stdout, new RegExp(`seed: snapshot ${seed.data.id.slice(0, 12)}`));

  const s = await runCli(['files', id, '--step', '9', '--out', join(tmp('out'), 'x')], env);
  assert.equal(s.code, 2);
  assert.match(s.stderr, new RegExp(`keel: session ${id} has 3 steps; --step takes 0 \\(the seed\\) to 3`));
  assert.deepEqual(await sessionContainers(docker, id), [], 'the sandbox is gone at the end');

  const client = await KeelClient.connect({ address: temporal.address });
  try {
    await recordHistory(client.temporal, id, 'workspace-seed-session.json');
  } finally {
    await client.close();
  }
});

test('bad workspaces fail before anything starts, in one line naming the problem', { timeout: 60_000 }, async () => {
  const script = join(tmp('script'), 'turns.json');
  writeFileSync(script, JSON.stringify([{ text: 'Done.' }]));
  const run = (...extra: string[]) => runCli(['run', 'x', '--script', script, '--id', uniqueId('ws-bad'), ...extra], env);
  let r = await run('--workspace', '/nonexistent/keel-workspace');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^keel: workspace \/nonexistent\/keel-workspace: no such file or directory$/m);
  r = await run('--workspace', sourceRepo(), '--ref', 'no-such-branch');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown ref "no-such-branch"/);
  const tarDir = tmp('tar');
  writeFileSync(join(tarDir, 'x'), 'x');
  execFileSync('tar', ['-cf', join(tarDir, 'evil.tar'), '-P', join(tarDir, 'x')]);
  r = await run('--workspace', join(tarDir, 'evil.tar'));
  assert.equal(r.code, 2);
  assert.match(r.stderr, /has an absolute path/);
  r = await runCli(['files', 'no-such-session', '--out', join(tmp('out'), 'x')], env);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no session no-such-session/);
});
