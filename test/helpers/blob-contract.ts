/**
 * The blob-store contract (blobs/store.ts), as one suite that runs against every
 * store: the directory store (test/unit/blobs.test.ts) and the S3 store on a
 * real S3-compatible server (test/integration/blobs-s3.test.ts).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { BlobMismatchError, BlobMissingError, readBlob, type BlobStore } from '../../blobs';

/** A store no other test writes to, and a way to list what a failed write left behind (temp files, open uploads). */
export interface FreshStore {
  store: BlobStore;
  residue(): Promise<unknown[]>;
}

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

async function* chunks(parts: Buffer[], fail?: Error): AsyncGenerator<Buffer> {
  for (const p of parts) yield p;
  if (fail) throw fail;
}

export function blobStoreContract(name: string, fresh: () => Promise<FreshStore>): void {
  describe(`${name}: the blob-store contract`, () => {
    it('stores by sha once, says what it holds, and reads it back', async () => {
      const { store } = await fresh();
      const data = Buffer.from('hello blob\n');
      const id = sha(data);
      assert.deepEqual(await store.has([id]), [false]);
      assert.equal(await store.put(id, data), data.length);
      assert.deepEqual(await store.has([id, sha('other')]), [true, false]);
      assert.equal(await store.put(id, data), 0, 'a second put of the same content writes nothing');
      assert.deepEqual(await readBlob(store, id), data);
      assert.deepEqual(await store.has([]), []);
    });

    it('takes chunked sources', async () => {
      const { store } = await fresh();
      const parts = [Buffer.alloc(300_000, 1), Buffer.alloc(5, 2), Buffer.alloc(1 << 20, 3)];
      const whole = Buffer.concat(parts);
      assert.equal(await store.put(sha(whole), chunks(parts)), whole.length);
      assert.deepEqual(await readBlob(store, sha(whole)), whole);
    });

    it('refuses content that does not hash to the name and leaves nothing behind', async () => {
      const { store, residue } = await fresh();
      const wrong = sha('something else');
      await assert.rejects(store.put(wrong, Buffer.from('not that')), (e) => e instanceof BlobMismatchError && e.expected === wrong);
      await assert.rejects(store.put(wrong, chunks([Buffer.alloc(12 << 20, 7)])), BlobMismatchError);
      assert.deepEqual(await store.has([wrong]), [false]);
      assert.deepEqual(await residue(), []);
    });

    it('leaves nothing behind when the source fails midway', async () => {
      const { store, residue } = await fresh();
      await assert.rejects(store.put(sha('partial'), chunks([Buffer.from('part')], new Error('source died'))), /source died/);
      await assert.rejects(store.put(sha('partial big'), chunks([Buffer.alloc(9 << 20, 1)], new Error('source died late'))), /source died late/);
      assert.deepEqual(await store.has([sha('partial')]), [false]);
      assert.deepEqual(await residue(), []);
    });

    it('keeps manifests as verified blobs', async () => {
      const { store } = await fresh();
      const text = '{"version":1,"entries":[]}';
      await store.putManifest(sha(text), text);
      assert.equal(await store.getManifest(sha(text)), text);
      assert.equal(await store.getManifest(sha('absent')), undefined);
      await assert.rejects(store.putManifest(sha('x'), text), BlobMismatchError);
    });

    it('lists what it holds with sizes and times, removes on request, and keeps without changing content', async () => {
      const { store } = await fresh();
      const a = Buffer.from('first blob');
      const b = Buffer.alloc(70_000, 9);
      await store.put(sha(a), a);
      await store.put(sha(b), b);
      const before = Date.now() - 60_000;
      const listed = new Map<string, { bytes: number; touchedAt: number }>();
      for await (const info of store.list()) listed.set(info.sha, info);
      assert.deepEqual([...listed.keys()].sort(), [sha(a), sha(b)].sort());
      assert.equal(listed.get(sha(b))?.bytes, b.length);
      assert.ok((listed.get(sha(a))?.touchedAt ?? 0) > before, 'touched when written');
      await store.keep([sha(a), sha('never stored')]);
      assert.deepEqual(await readBlob(store, sha(a)), a);
      await store.remove(sha(a));
      await store.remove(sha('never stored'));
      assert.deepEqual(await store.has([sha(a), sha(b)]), [false, true]);
    });

    it('rejects names that are not sha256 hex, and missing blobs', async () => {
      const { store } = await fresh();
      await assert.rejects(async () => store.has(['../../etc/passwd']), /not a sha256/);
      await assert.rejects(async () => store.put('NOT-A-SHA', Buffer.from('x')), /not a sha256/);
      await assert.rejects(store.get(sha('never stored')), BlobMissingError);
    });
  });
}
