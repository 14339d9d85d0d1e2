/**
 * Blob garbage collection on real Postgres, Docker and a directory blob store:
 * what retention keeps and removes, and that blobs a live session is writing
 * (or has just found already stored) are never removed, even with GC running
 * in a loop beside it.
 *
 *   node --import tsx --test test/integration/gc.test.ts
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { utimesSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { createSandboxActivities } from '../../activities/sandbox';
import { collectGarbage } from '../../audit/gc';
import { putContent, type DirBlobStore } from '../../blobs';
import type { SessionEvent } from '../../common/events';
import { readManifest } from '../../common/manifest';
import type { SandboxHandle, SnapshotInfo } from '../../common/types';
import { defaultImageTag, ensureImage, SandboxRuntime } from '../../host';
import { appendEvents, connect, migrate, type Sql } from '../../store';
import { scratchBlobs, uniqueId } from '../helpers/env';

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://keel:keel@localhost:5432/keel_test';
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');
const DAY = 24 * 3600_000;
let sql: Sql;

before(async () => {
  sql = connect(DATABASE_URL);
  await migrate(sql);
});
after(async () => {
  await sql.end({ timeout: 2 });
});

function backdate(store: DirBlobStore, id: string, days: number): void {
  const t = new Date(Date.now() - days * DAY);
  utimesSync(store.pathOf(id), t, t);
}

async function session(id: string, events: Array<Omit<SessionEvent, 'seq'>>, endedDaysAgo?: number): Promise<void> {
  const all = [{ type: 'session.started', data: { task: 'gc test', model: 'scripted:gc', tenant: 'default', maxSteps: 1 } }, ...events];
  if (endedDaysAgo !== undefined) {
    all.push({ type: 'session.ended', data: { sessionId: id, status: 'completed', steps: 1, toolCalls: 0, usage: { inputTokens: 0, outputTokens: 0 } } });
  }
  await appendEvents(sql, id, all.map((e, i) => ({ ...e, seq: i + 1 }) as SessionEvent));
  if (endedDaysAgo !== undefined) await sql`update sessions set ended_at = now() - make_interval(days => ${endedDaysAgo}) where id = ${id}`;
}

describe('retention', () => {
  it('removes what only expired sessions reference and what nobody references, keeps the rest', async () => {
    const blobs = scratchBlobs();
    const put = async (label: string) => (await putContent(blobs, `${label} ${randomBytes(8).toString('hex')}`)).sha;
    const onlyExpired = await put('expired');
    const live = await put('live');
    const recent = await put('recent');
    const orphan = await put('orphan');
    const young = await put('young');
    const f1 = await put('file 1');
    const f2 = await put('file 2');
    const manifest = JSON.stringify({ version: 1, roots: ['/workspace'], entries: [{ path: '/workspace/a', type: 'file', mode: 420, size: 1, sha: f1 }, { path: '/workspace/b', type: 'file', mode: 420, size: 1, sha: f2 }] });
    await blobs.putManifest(sha(manifest), manifest);
    const snap: SnapshotInfo = { id: sha(manifest), files: 2, bytes: 2, added: 2, modified: 0, removed: 0, changedBytes: 2, uploadedBytes: 2, durationMs: 1 };
    const out = (s: string) => ({ type: 'tool.result', data: { step: 1, callId: 'c', name: 'shell', ok: true, output: 'preview', outputRef: { sha: s, bytes: 1 } } }) as Omit<SessionEvent, 'seq'>;
    await session(uniqueId('gc-expired'), [out(onlyExpired)], 40);
    await session(uniqueId('gc-live'), [out(live), { type: 'tool.result', data: { step: 2, callId: 'd', name: 'shell', ok: true, output: '', snapshot: snap } } as Omit<SessionEvent, 'seq'>]);
    await session(uniqueId('gc-recent'), [out(recent)], 1);
    for (const id of [onlyExpired, live, recent, orphan, f1, f2, sha(manifest)]) backdate(blobs, id, 10);

    const dry = await collectGarbage(sql, blobs, { retentionDays: 30, graceSec: 3600, dryRun: true });
    assert.equal(dry.removed, 2);
    assert.deepEqual(await blobs.has([onlyExpired, orphan]), [true, true], 'a dry run removes nothing');

    const r = await collectGarbage(sql, blobs, { retentionDays: 30, graceSec: 3600 });
    assert.equal(r.removed, 2);
    assert.equal(r.young, 1);
    assert.deepEqual(await blobs.has([onlyExpired, orphan]), [false, false], 'expired-only and unreferenced blobs are gone');
    assert.deepEqual(await blobs.has([live, recent, young, f1, f2, sha(manifest)]), [true, true, true, true, true, true], 'retained, referenced through a manifest, or young: kept');
  });
});

describe('a mark slower than the grace period', () => {
  it('keeps a blob written just before the mark and referenced while it runs', async () => {
    const blobs = scratchBlobs();
    const id = uniqueId('gc-slow-mark');
    const manifest = JSON.stringify({ version: 1, roots: ['/workspace'], entries: [] });
    await blobs.putManifest(sha(manifest), manifest);
    const snap: SnapshotInfo = { id: sha(manifest), files: 0, bytes: 0, added: 0, modified: 0, removed: 0, changedBytes: 0, uploadedBytes: 0, durationMs: 1 };
    await session(id, [{ type: 'tool.result', data: { step: 1, callId: 'a', name: 'shell', ok: true, output: '', snapshot: snap } } as Omit<SessionEvent, 'seq'>]);
    // A session has just uploaded this output; its event is recorded while GC is marking.
    const output = await putContent(blobs, `output ${randomBytes(8).toString('hex')}`);
    // The mark reads the session's manifest: make that take longer than the grace period, and
    // record the event that references the new blob meanwhile, after the mark's query began.
    const slow = Object.create(blobs) as DirBlobStore;
    slow.getManifest = async (m: string) => {
      if (m !== snap.id) return blobs.getManifest(m);
      await new Promise((r) => setTimeout(r, 1500));
      await appendEvents(sql, id, [{ seq: 3, type: 'tool.result', data: { step: 2, callId: 'b', name: 'shell', ok: true, output: 'preview', outputRef: { sha: output.sha, bytes: 1 } } } as SessionEvent]);
      return blobs.getManifest(m);
    };
    const r = await collectGarbage(sql, slow, { retentionDays: 30, graceSec: 1 });
    assert.ok(r.young >= 1, 'the new blob counts as young');
    assert.deepEqual(await blobs.has([output.sha]), [true], 'kept: it was written less than the grace period before the mark began');
  });
});

describe('with a live session writing', () => {
  const docker = new Docker();
  let runtime: SandboxRuntime;
  const created: string[] = [];

  before(async () => {
    await ensureImage(docker, defaultImageTag());
    runtime = new SandboxRuntime(docker);
  }, { timeout: 600_000 });
  after(async () => {
    const acts = createSandboxActivities({ runtime, blobs: scratchBlobs(), config: { hostId: 'gc-test' } });
    for (const id of created) await acts.destroySandbox({ sessionId: id }).catch(() => undefined);
    await runtime.close();
  });

  it('never removes a blob a live session just found already stored (kept before it is referenced)', async () => {
    const blobs = scratchBlobs();
    const acts = createSandboxActivities({ runtime, blobs, config: { hostId: 'gc-test' } });
    const id = uniqueId('gc-dedupe');
    created.push(id);
    const handle: SandboxHandle = await acts.provisionSandbox({ sessionId: id });
    // An old blob nobody references: exactly the content the session is about to write.
    const content = `shared content ${randomBytes(8).toString('hex')}\n`;
    await blobs.put(sha(content), Buffer.from(content));
    backdate(blobs, sha(content), 10);
    const r = await acts.runTool({ sessionId: id, handle, call: { id: 'w', name: 'write_file', input: { path: 'shared.txt', content } }, snapshot: {} });
    assert.ok(r.snapshot, 'the step made a snapshot');
    assert.equal(r.snapshot.uploadedBytes < content.length + 200, true, 'the file itself was deduplicated, not uploaded');
    // GC runs after the upload found the blob, before any event references the snapshot.
    await collectGarbage(sql, blobs, { retentionDays: 30, graceSec: 60 });
    assert.deepEqual(await blobs.has([sha(content)]), [true], 'kept: the session is about to reference it');
  });

  it('with GC in a loop beside it, every snapshot the session records stays whole', { timeout: 300_000 }, async () => {
    const blobs = scratchBlobs();
    const acts = createSandboxActivities({ runtime, blobs, config: { hostId: 'gc-test' } });
    const id = uniqueId('gc-race');
    created.push(id);
    const handle = await acts.provisionSandbox({ sessionId: id });
    await session(id, []);
    let stop = false;
    let passes = 0;
    const gc = (async () => {
      while (!stop) {
        await collectGarbage(sql, blobs, { retentionDays: 30, graceSec: 1 });
        passes++;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const snapshots: string[] = [];
    let parent: string | undefined;
    let seq = 1;
    const deadline = Date.now() + 15_000;
    for (let i = 0; Date.now() < deadline; i++) {
      const command = `printf '%s' "$RANDOM-${i}" > f${i % 7}.txt; head -c ${1000 + i * 37} /dev/urandom > big${i % 3}.bin`;
      const r = await acts.runTool({ sessionId: id, handle, call: { id: `c${i}`, name: 'shell', input: { command } }, snapshot: { parent } });
      if (r.snapshot) {
        parent = r.snapshot.id;
        snapshots.push(parent);
      }
      await appendEvents(sql, id, [{ seq: ++seq, type: 'tool.result', data: { step: i + 1, ...r } }]);
    }
    stop = true;
    await gc;
    assert.ok(passes >= 5, `GC ran ${passes} times meanwhile`);
    assert.ok(snapshots.length >= 10, `${snapshots.length} snapshots`);
    for (const s of snapshots) {
      const stored = await readManifest(blobs, s);
      assert.ok(stored, `manifest ${s} is still stored, with every tree object it names (readManifest throws otherwise)`);
      const files = stored.manifest.entries.flatMap((e) => (e.type === 'file' ? [e.sha] : []));
      assert.ok((await blobs.has(files)).every(Boolean), `every file of snapshot ${s} is still stored`);
    }
    // And the last one restores, byte for byte, into a new container.
    const fresh = await acts.provisionSandbox({ sessionId: id, generation: 2, restoreFrom: parent });
    const check = await acts.runTool({ sessionId: id, handle: fresh, call: { id: 'check', name: 'shell', input: { command: 'ls /workspace | wc -l' } } });
    assert.equal(check.output.trim(), '10');
  });
});
