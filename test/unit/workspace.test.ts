/**
 * Seeds and exports without a sandbox: the trees built on the host are the executor's byte for byte
 * (checked against sandbox/keel_executor itself), bad sources are refused with messages that name
 * the problem, and a git repository stored as a seed comes back out whole, history included.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { pack } from 'tar-stream';
import { DirBlobStore } from '../../blobs';
import type { EventRow } from '../../common/events';
import { readManifest } from '../../common/manifest';
import { planFork } from '../../inspect';
import { prepareWorkspace, workspaceAt, workspaceGitDiff, writeWorkspaceDir, writeWorkspaceTar, WorkspaceError } from '../../workspace';
import { rootText, treeText } from '../../workspace/tree';

const tmp = (p: string): string => mkdtempSync(join(tmpdir(), `keel-ws-${p}-`));
const blobs = (): DirBlobStore => new DirBlobStore(tmp('blobs'));
const git = (cwd: string, ...args: string[]): string =>
  execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@x', '-c', 'init.defaultBranch=main', ...args], { cwd, encoding: 'utf8' }).trim();

test("tree and root objects are the executor's, byte for byte (odd names included)", () => {
  const kids = [
    { name: 'b\u00e9\u{1F600}', type: 'file' as const, mode: 0o644, size: 3, sha: 'a'.repeat(64) },
    { name: 'a"\\\n', type: 'symlink' as const, target: 't\x7f' },
    { name: 'z', type: 'dir' as const, mode: 0o755, tree: 'b'.repeat(64) },
  ];
  const py = execFileSync('python3', ['-c', `
import sys; sys.path.insert(0, ${JSON.stringify(join(__dirname, '../../sandbox'))})
from keel_executor.snapshots import _tree_text, _root_text
print(_tree_text(sorted([('b\\u00e9\\U0001F600', ('file', 420, 3, 'a'*64)), ('a"\\\\\\n', ('symlink', 't\\x7f')), ('z', ('dir', 493, 'b'*64))])))
print(_root_text([('/workspace', 493, 'c'*64)]))
`], { encoding: 'utf8' }).split('\n');
  assert.equal(treeText(kids), py[0]);
  assert.equal(rootText([{ path: '/workspace', mode: 0o755, tree: 'c'.repeat(64) }]), py[1]);
});

function repo(): string {
  const dir = tmp('repo');
  git(dir, 'init', '-q');
  writeFileSync(join(dir, 'hello.txt'), 'hello\n');
  mkdirSync(join(dir, 'src'));
  writeFileSync(join(dir, 'src', 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  symlinkSync('src/run.sh', join(dir, 'run'));
  git(dir, 'add', '-A');
  git(dir, 'commit', '-qm', 'first');
  git(dir, 'tag', 'v1');
  writeFileSync(join(dir, 'hello.txt'), 'hello again\n');
  git(dir, 'commit', '-qam', 'second');
  writeFileSync(join(dir, 'uncommitted.txt'), 'not in any commit\n');
  return dir;
}

test('a git repository is seeded at a ref with its history, and comes back out whole', async () => {
  const src = repo();
  const store = blobs();
  const seed = await prepareWorkspace(src, store);
  assert.equal(seed.source.kind, 'git');
  assert.equal(seed.source.branch, 'main');
  const out = join(tmp('out'), 'w');
  await writeWorkspaceDir(store, seed.snapshot, out);
  assert.equal(readFileSync(join(out, 'hello.txt'), 'utf8'), 'hello again\n');
  assert.equal(readlinkSync(join(out, 'run')), 'src/run.sh');
  assert.equal(statSync(join(out, 'src', 'run.sh')).mode & 0o777, 0o755);
  assert.throws(() => statSync(join(out, 'uncommitted.txt')), 'only committed files');
  assert.equal(git(out, 'log', '--format=%s'), 'second\nfirst');
  assert.equal(git(out, 'status', '--porcelain'), '', 'the checkout is clean');
  assert.equal(git(out, 'rev-parse', '--abbrev-ref', 'HEAD'), 'main');
  assert.equal(git(out, 'remote'), '', 'no origin pointing at a host path');

  const old = await prepareWorkspace(src, store, { ref: 'v1' });
  const back = join(tmp('out'), 'w');
  await writeWorkspaceDir(store, old.snapshot, back);
  assert.equal(readFileSync(join(back, 'hello.txt'), 'utf8'), 'hello\n');
  assert.equal(git(back, 'log', '--format=%s'), 'first');
  const patch = await workspaceGitDiff(store, old.snapshot, seed.snapshot);
  assert.match(patch, /^diff --git a\/hello.txt b\/hello.txt$/m);
  assert.match(patch, /^-hello$/m);
  assert.match(patch, /^\+hello again$/m);
  assert.doesNotMatch(patch, /\.git\//, '.git is left out of the patch');

  const manifest = (await readManifest(store, seed.snapshot))!.manifest;
  assert.deepEqual(manifest.roots, ['/workspace', '/home/keel']);
  assert.ok(manifest.entries.some((e) => e.path === '/workspace/.git/HEAD'), '.git is part of the seed');
});

test('bad sources are refused naming the problem', async () => {
  const store = blobs();
  await assert.rejects(prepareWorkspace('/nonexistent/keel-ws', store), (e: Error) => e instanceof WorkspaceError && /no such file or directory/.test(e.message));
  await assert.rejects(prepareWorkspace(repo(), store, { ref: 'no-such-branch' }), /unknown ref "no-such-branch"/);
  const plain = tmp('plain');
  writeFileSync(join(plain, 'a'), 'a');
  await assert.rejects(prepareWorkspace(plain, store, { ref: 'main' }), /needs a git repository/);
  symlinkSync('/etc/passwd', join(plain, 'abs'));
  await assert.rejects(prepareWorkspace(plain, store), /symlink abs -> \/etc\/passwd points outside the workspace/);
  const up = tmp('up');
  symlinkSync('../../secret', join(up, 'rel'));
  await assert.rejects(prepareWorkspace(up, store), /symlink rel -> \.\.\/\.\.\/secret points outside/);

  const tar = async (name: string, entries: Array<Record<string, unknown>>): Promise<string> => {
    const file = join(tmp('tar'), name);
    const p = pack();
    const done = pipeline(p, createWriteStream(file));
    for (const e of entries) p.entry(e as never, (e.body as string | undefined) ?? '');
    p.finalize();
    await done;
    return file;
  };
  await assert.rejects(prepareWorkspace(await tar('dots.tar', [{ name: 'ok.txt', body: 'x' }, { name: '../evil.txt', body: 'x' }]), store), /tar entry "\.\.\/evil\.txt" climbs out of the archive/);
  await assert.rejects(prepareWorkspace(await tar('abs.tar', [{ name: '/etc/evil', body: 'x' }]), store), /tar entry "\/etc\/evil" has an absolute path/);
  await assert.rejects(prepareWorkspace(await tar('link.tar', [{ name: 'l', type: 'symlink', linkname: '/etc' }]), store), /tar symlink l -> \/etc points outside/);
  await assert.rejects(prepareWorkspace(await tar('hard.tar', [{ name: 'h', type: 'link', linkname: 'x' }]), store), /hard link/);
  const good = await tar('good.tar', [{ name: 'd/', type: 'directory', mode: 0o755 }, { name: 'd/f.txt', body: 'tar file\n', mode: 0o644 }, { name: 'd/l', type: 'symlink', linkname: 'f.txt' }]);
  const seed = await prepareWorkspace(good, store);
  assert.equal(seed.files, 1);
  const out = join(tmp('out'), 'w');
  await writeWorkspaceDir(store, seed.snapshot, out);
  assert.equal(readFileSync(join(out, 'd', 'f.txt'), 'utf8'), 'tar file\n');
  const outTar = join(tmp('out'), 'w.tar');
  assert.equal(await writeWorkspaceTar(store, seed.snapshot, outTar), 1);
  const listed = execFileSync('tar', ['-tvf', outTar], { encoding: 'utf8' });
  assert.match(listed, /d\/f\.txt/);
  assert.match(listed, /d\/l -> f\.txt/);
  await assert.rejects(writeWorkspaceTar(store, seed.snapshot, outTar), /exists; give a new file name/);
  await assert.rejects(writeWorkspaceDir(store, seed.snapshot, out), /is not empty/);
});

test('the snapshot after a step: seed at 0, the last before the next model call, out of range refused', () => {
  const at = new Date();
  const ev = (seq: number, type: string, data: Record<string, unknown>): EventRow => ({ sessionId: 's', at, seq, type, data }) as unknown as EventRow;
  const snap = (id: string) => ({ id, files: 1, bytes: 1, added: 1, modified: 0, removed: 0, changedBytes: 1, uploadedBytes: 0, durationMs: 0 });
  const events = [
    ev(1, 'session.started', { task: 't', model: 'm', tenant: 'default', maxSteps: 5 }),
    ev(2, 'sandbox.snapshot', { ...snap('seed'), reason: 'seed' }),
    ev(3, 'model.call', { step: 1 }),
    ev(4, 'tool.result', { step: 1, callId: 'a', name: 'shell', ok: true, output: '', snapshot: snap('one') }),
    ev(5, 'model.call', { step: 2 }),
    ev(6, 'tool.result', { step: 2, callId: 'b', name: 'shell', ok: true, output: '' }),
    ev(7, 'model.call', { step: 3 }),
  ];
  assert.deepEqual(workspaceAt('s', events, 0), { steps: 3, step: 0, snapshot: 'seed', seed: 'seed' });
  assert.equal(workspaceAt('s', events, 1).snapshot, 'one');
  assert.equal(workspaceAt('s', events, 2).snapshot, 'one', 'a step that changed nothing keeps the files before it');
  assert.equal(workspaceAt('s', events).snapshot, 'one');
  assert.throws(() => workspaceAt('s', events, 4), /session s has 3 steps; --step takes 0 \(the seed\) to 3/);
  assert.throws(() => workspaceAt('s', events, -1), /--step takes 0/);
  // A fork of a seeded session at a step before any change starts from the seed.
  const early = [...events.slice(0, 3), ev(4, 'tool.result', { step: 1, callId: 'a', name: 'shell', ok: true, output: '' })];
  assert.equal(planFork('s', early, 1).snapshot, 'seed');
});
