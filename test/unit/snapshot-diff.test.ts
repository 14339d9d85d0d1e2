/**
 * Pure parts of `keel diff`: manifest diffs, finding a step's snapshots, unified text diffs.
 *
 *   node --import tsx --test test/unit/snapshot-diff.test.ts
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { addReferences, diffManifests, parseManifest, readManifest, type ManifestEntry } from '../../common/manifest';
import type { EventRow } from '../../common/events';
import { asText, stepSnapshots, unifiedDiff } from '../../inspect';

const file = (path: string, sha: string, size = 1, mode = 0o644): ManifestEntry => ({ path, type: 'file', mode, size, sha });
const dir = (path: string, mode = 0o755): ManifestEntry => ({ path, type: 'dir', mode });

describe('diffManifests', () => {
  it('finds added, removed and modified entries, sorted by path', () => {
    const a = { entries: [dir('/workspace'), file('/workspace/a', '1'), file('/workspace/b', '2'), file('/workspace/x', '9', 1, 0o644), { path: '/workspace/l', type: 'symlink', target: 'a' } as ManifestEntry] };
    const b = { entries: [dir('/workspace'), file('/workspace/a', '1'), file('/workspace/c', '3'), file('/workspace/x', '9', 1, 0o755), { path: '/workspace/l', type: 'symlink', target: 'c' } as ManifestEntry, dir('/workspace/d')] };
    const d = diffManifests(a, b);
    assert.deepEqual(d.added.map((e) => e.path), ['/workspace/c', '/workspace/d']);
    assert.deepEqual(d.removed.map((e) => e.path), ['/workspace/b']);
    assert.deepEqual(d.modified.map((m) => m.after.path), ['/workspace/l', '/workspace/x']);
  });

  it('treats a missing "before" as the empty sandbox and equal manifests as no change', () => {
    const b = { entries: [dir('/workspace'), file('/workspace/a', '1')] };
    assert.equal(diffManifests(undefined, b).added.length, 2);
    assert.deepEqual(diffManifests(b, b), { added: [], removed: [], modified: [] });
  });

  it('sees a file replaced by a directory of the same name', () => {
    const d = diffManifests({ entries: [file('/workspace/p', '1')] }, { entries: [dir('/workspace/p')] });
    assert.equal(d.modified.length, 1);
  });
});

describe('stepSnapshots', () => {
  // Partial payloads: stepSnapshots reads only step and snapshot.
  const ev = (seq: number, type: EventRow['type'], data: Record<string, unknown>): EventRow => ({ sessionId: 's', seq, type, at: new Date(), data }) as EventRow;
  const snap = (id: string) => ({ id, files: 0, bytes: 0, added: 0, modified: 0, removed: 0, changedBytes: 0, uploadedBytes: 0, durationMs: 0 });
  const events = [
    ev(1, 'session.started', {}),
    ev(2, 'tool.result', { step: 1, snapshot: snap('s1') }),
    ev(3, 'tool.result', { step: 2 }),
    ev(4, 'tool.result', { step: 3, snapshot: snap('s3a') }),
    ev(5, 'tool.result', { step: 3, snapshot: snap('s3b') }),
    ev(6, 'tool.result', { step: 4, snapshot: snap('s4') }),
  ];

  it('pairs the last snapshot of the step with the last one before the step', () => {
    assert.deepEqual(stepSnapshots(events, 3), { before: snap('s1'), after: snap('s3b') });
    assert.deepEqual(stepSnapshots(events, 4), { before: snap('s3b'), after: snap('s4') });
    assert.deepEqual(stepSnapshots(events, 1), { after: snap('s1') });
    assert.deepEqual(stepSnapshots(events, 2), {});
  });

  it('a step after the seed (or a suspension) is compared with it, not with an empty sandbox', () => {
    const seeded = [
      ev(1, 'session.started', {}),
      ev(2, 'sandbox.snapshot', { ...snap('seed'), reason: 'seed' }),
      ev(3, 'tool.result', { step: 1, snapshot: snap('s1') }),
      ev(4, 'sandbox.snapshot', { ...snap('susp'), reason: 'suspend' }),
      ev(5, 'tool.result', { step: 2, snapshot: snap('s2') }),
    ];
    assert.deepEqual(stepSnapshots(seeded, 1), { before: snap('seed'), after: snap('s1') });
    assert.deepEqual(stepSnapshots(seeded, 2), { before: snap('susp'), after: snap('s2') });
  });
});

describe('unifiedDiff', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'keel-udiff-'));
  /** Hunks as GNU diff -u writes them (headers stripped). */
  function gnu(a: string, b: string): string {
    writeFileSync(join(tmp, 'a'), a);
    writeFileSync(join(tmp, 'b'), b);
    const out = spawnSync('diff', ['-u', join(tmp, 'a'), join(tmp, 'b')], { encoding: 'utf8' }).stdout;
    return out.split('\n').slice(2).join('\n');
  }
  const body = (d: string): string => d.split('\n').slice(2).join('\n');
  const lines = (n: number, f: (i: number) => string = (i) => `line ${i}`): string => Array.from({ length: n }, (_, i) => `${f(i + 1)}\n`).join('');

  const cases: Array<[string, string, string]> = [
    ['one line changed in the middle', lines(20), lines(20, (i) => (i === 10 ? 'changed' : `line ${i}`))],
    ['two distant changes make two hunks', lines(40), lines(40, (i) => (i === 3 || i === 35 ? `x${i}` : `line ${i}`))],
    ['insertions at the start and end', lines(5), `new first\n${lines(5)}new last\n`],
    ['deletion of everything', lines(4), ''],
    ['creation from empty', '', lines(3)],
  ];
  for (const [name, a, b] of cases) {
    it(`matches diff -u: ${name}`, () => assert.equal(body(unifiedDiff('/workspace/f', a, b)), gnu(a, b)));
  }

  it('is empty for equal texts and names the path', () => {
    assert.equal(unifiedDiff('/p', 'a\n', 'a\n'), '');
    assert.match(unifiedDiff('/workspace/f.py', 'a\n', 'b\n'), /^--- a\/workspace\/f\.py\n\+\+\+ b\/workspace\/f\.py\n/);
  });

  it('treats only small NUL-free UTF-8 as text', () => {
    assert.equal(asText(Buffer.from('héllo\n')), 'héllo\n');
    assert.equal(asText(Buffer.from([0x66, 0, 0x67])), undefined);
    assert.equal(asText(Buffer.from([0xff, 0xfe])), undefined);
    assert.equal(asText(Buffer.alloc(70 * 1024, 0x61)), undefined);
    rmSync(tmp, { recursive: true, force: true });
  });
});

describe('readManifest', () => {
  const sha = (t: string): string => createHash('sha256').update(t).digest('hex');
  const store = (texts: string[]) => {
    const m = new Map(texts.map((t) => [sha(t), t]));
    return { getManifest: async (id: string) => m.get(id) };
  };
  const leaf = '{"version":2,"tree":[{"name":"f","type":"file","mode":420,"size":1,"sha":"' + 'a'.repeat(64) + '"},{"name":"l","type":"symlink","target":"f"}]}';
  const top = `{"version":2,"tree":[{"name":"d","type":"dir","mode":493,"tree":"${sha(leaf)}"}]}`;
  const root = `{"version":2,"roots":["/workspace","/home/keel"],"trees":[{"path":"/workspace","mode":493,"tree":"${sha(top)}"}]}`;

  it('flattens a version 2 tree into version 1 entries, sorted by path, with every object it read', async () => {
    const got = await readManifest(store([root, top, leaf]), sha(root));
    assert.deepEqual(got?.manifest.entries, [
      { path: '/workspace', type: 'dir', mode: 493 },
      { path: '/workspace/d', type: 'dir', mode: 493 },
      { path: '/workspace/d/f', type: 'file', mode: 420, size: 1, sha: 'a'.repeat(64) },
      { path: '/workspace/d/l', type: 'symlink', target: 'f' },
    ]);
    assert.deepEqual([...(got?.objects.keys() ?? [])].sort(), [sha(root), sha(top), sha(leaf)].sort());
  });

  it('reads version 1 as it is, and says which tree is missing or malformed', async () => {
    const v1 = '{"version":1,"roots":["/workspace"],"entries":[{"path":"/workspace","type":"dir","mode":493}]}';
    assert.equal((await readManifest(store([v1]), sha(v1)))?.manifest.entries.length, 1);
    assert.equal(await readManifest(store([]), sha(v1)), undefined);
    await assert.rejects(readManifest(store([root, top]), sha(root)), /the tree of \/workspace\/d .* is not in the store/);
    const evil = '{"version":2,"tree":[{"name":"../x","type":"file","mode":420,"size":1,"sha":"' + 'a'.repeat(64) + '"}]}';
    const evilRoot = `{"version":2,"roots":["/workspace"],"trees":[{"path":"/workspace","mode":493,"tree":"${sha(evil)}"}]}`;
    await assert.rejects(readManifest(store([evilRoot, evil]), sha(evilRoot)), /bad entry name/);
    assert.throws(() => parseManifest(root), /read it with readManifest/);
  });
});

describe('addReferences', () => {
  const sha = (t: string): string => createHash('sha256').update(t).digest('hex');
  const file = (n: string): string => createHash('sha256').update(n).digest('hex');
  const tree = (kids: string[]): string => `{"version":2,"tree":[${kids.join(',')}]}`;
  const leaf = tree([`{"name":"f","type":"file","mode":420,"size":1,"sha":"${file('f')}"}`]);
  const top = tree([`{"name":"d","type":"dir","mode":493,"tree":"${sha(leaf)}"}`, `{"name":"g","type":"file","mode":420,"size":1,"sha":"${file('g')}"}`]);
  const rootOf = (t: string): string => `{"version":2,"roots":["/workspace"],"trees":[{"path":"/workspace","mode":493,"tree":"${sha(t)}"}]}`;

  it('adds every object and file, reads a tree shared with a snapshot added before only once', async () => {
    const texts = new Map([rootOf(top), top, leaf].map((t) => [sha(t), t]));
    const reads: string[] = [];
    const source = { getManifest: async (id: string) => (reads.push(id), texts.get(id)) };
    const seen = new Set<string>();
    assert.equal(await addReferences(source, sha(rootOf(top)), seen), true);
    assert.deepEqual([...seen].sort(), [sha(rootOf(top)), sha(top), sha(leaf), file('f'), file('g')].sort());
    // A second snapshot whose top differs but shares d/: d's tree is not read again.
    const top2 = tree([`{"name":"d","type":"dir","mode":493,"tree":"${sha(leaf)}"}`]);
    texts.set(sha(top2), top2).set(sha(rootOf(top2)), rootOf(top2));
    reads.length = 0;
    assert.equal(await addReferences(source, sha(rootOf(top2)), seen), true);
    assert.deepEqual(reads, [sha(rootOf(top2)), sha(top2)]);
  });

  it('adds nothing of a snapshot with a missing tree, so a later one sharing its trees reads them whole', async () => {
    const texts = new Map([rootOf(top), top].map((t) => [sha(t), t]));
    const seen = new Set<string>();
    await assert.rejects(addReferences({ getManifest: async (id: string) => texts.get(id) }, sha(rootOf(top)), seen), /is not in the store/);
    assert.equal(seen.size, 0);
    assert.equal(await addReferences({ getManifest: async () => undefined }, sha(rootOf(top)), seen), false);
  });
});
