/**
 * The directory blob store: verified, atomic, deduplicated writes.
 *
 *   node --import tsx --test test/unit/blobs.test.ts
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BlobMismatchError, BlobMissingError, DirBlobStore } from '../../activities/blobs';

const dir = mkdtempSync(join(tmpdir(), 'keel-blobs-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

async function readAll(store: DirBlobStore, id: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await store.get(id)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('DirBlobStore', () => {
  const store = new DirBlobStore(dir);

  it('stores by sha with two levels of fan-out, once', async () => {
    const data = Buffer.from('hello blob\n');
    const id = sha(data);
    assert.deepEqual(await store.has([id]), [false]);
    assert.equal(await store.put(id, data), data.length);
    assert.equal(store.pathOf(id), join(dir, 'sha256', id.slice(0, 2), id.slice(2, 4), id));
    assert.ok(existsSync(store.pathOf(id)));
    assert.deepEqual(await store.has([id, sha('other')]), [true, false]);
    assert.equal(await store.put(id, data), 0, 'a second put of the same content writes nothing');
    assert.deepEqual(await readAll(store, id), data);
  });

  it('takes chunked sources', async () => {
    const parts = [Buffer.alloc(300_000, 1), Buffer.alloc(5, 2), Buffer.alloc(1 << 20, 3)];
    const whole = Buffer.concat(parts);
    async function* gen(): AsyncGenerator<Buffer> {
      for (const p of parts) yield p;
    }
    assert.equal(await store.put(sha(whole), gen()), whole.length);
    assert.deepEqual(await readAll(store, sha(whole)), whole);
  });

  it('refuses content that does not hash to the name and leaves nothing behind', async () => {
    const wrong = sha('something else');
    await assert.rejects(store.put(wrong, Buffer.from('not that')), (e) => e instanceof BlobMismatchError && e.expected === wrong);
    assert.deepEqual(await store.has([wrong]), [false]);
    assert.deepEqual(readdirSync(join(dir, 'tmp')), []);
  });

  it('removes the temp file when the source fails midway', async () => {
    async function* broken(): AsyncGenerator<Buffer> {
      yield Buffer.from('part');
      throw new Error('source died');
    }
    await assert.rejects(store.put(sha('partial'), broken()), /source died/);
    assert.deepEqual(readdirSync(join(dir, 'tmp')), []);
  });

  it('keeps manifests as verified blobs', async () => {
    const text = '{"version":1,"entries":[]}';
    await store.putManifest(sha(text), text);
    assert.equal(await store.getManifest(sha(text)), text);
    assert.equal(await store.getManifest(sha('absent')), undefined);
    await assert.rejects(store.putManifest(sha('x'), text), BlobMismatchError);
  });

  it('rejects names that are not sha256 hex, and missing blobs', async () => {
    assert.throws(() => store.pathOf('../../etc/passwd'), /not a sha256/);
    await assert.rejects(store.get(sha('never stored')), BlobMissingError);
  });
});
