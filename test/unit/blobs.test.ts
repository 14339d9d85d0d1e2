/**
 * The directory blob store: the shared blob-store contract, plus its layout on disk.
 *
 *   node --import tsx --test test/unit/blobs.test.ts
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { DirBlobStore } from '../../blobs';
import { blobStoreContract } from '../helpers/blob-contract';

const root = mkdtempSync(join(tmpdir(), 'keel-blobs-'));
after(() => rmSync(root, { recursive: true, force: true }));

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

blobStoreContract('DirBlobStore', async () => {
  const dir = mkdtempSync(join(root, 'store-'));
  const store = new DirBlobStore(dir);
  // Temp files of writes that failed would stay in <dir>/tmp.
  return { store, residue: async () => (existsSync(join(dir, 'tmp')) ? readdirSync(join(dir, 'tmp')) : []) };
});

describe('DirBlobStore keep', () => {
  it('marks a blob in use now, also when a put finds it present', async () => {
    const dir = mkdtempSync(join(root, 'keep-'));
    const store = new DirBlobStore(dir);
    const data = Buffer.from('old blob');
    await store.put(sha(data), data);
    const old = new Date(Date.now() - 7 * 24 * 3600_000);
    utimesSync(store.pathOf(sha(data)), old, old);
    const touched = async () => {
      for await (const info of store.list()) if (info.sha === sha(data)) return info.touchedAt;
      return 0;
    };
    assert.ok((await touched()) < Date.now() - 24 * 3600_000);
    await store.keep([sha(data)]);
    assert.ok((await touched()) > Date.now() - 60_000, 'kept: recent');
    utimesSync(store.pathOf(sha(data)), old, old);
    assert.equal(await store.put(sha(data), data), 0, 'deduplicated');
    assert.ok((await touched()) > Date.now() - 60_000, 'a deduplicated put keeps it too');
  });
});

describe('DirBlobStore layout', () => {
  it('stores by sha with two levels of fan-out', async () => {
    const dir = mkdtempSync(join(root, 'layout-'));
    const store = new DirBlobStore(dir);
    const data = Buffer.from('hello blob\n');
    const id = sha(data);
    await store.put(id, data);
    assert.equal(store.pathOf(id), join(dir, 'sha256', id.slice(0, 2), id.slice(2, 4), id));
    assert.ok(existsSync(store.pathOf(id)));
    assert.throws(() => store.pathOf('../../etc/passwd'), /not a sha256/);
  });
});
