/**
 * The S3 blob store against a real S3-compatible server (moto, from the tool venv
 * `npm run setup` fills): the directory store's behaviour, plus deduplication by
 * request count, multipart uploads, clear configuration errors, and one snapshot
 * and restore of a real sandbox through S3.
 *
 *   node --import tsx --test test/integration/blobs-s3.test.ts
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import Docker from 'dockerode';
import {
  BlobMismatchError,
  BlobMissingError,
  BlobStoreConfigError,
  BlobStoreUnavailableError,
  resolveS3BlobStoreOptions,
  S3BlobStore,
  type S3BlobStoreOptions,
} from '../../blobs';
import { createSandboxActivities } from '../../activities/sandbox';
import { defaultImageTag, ensureImage, SandboxRuntime } from '../../host';
import { blobStoreContract } from '../helpers/blob-contract';
import { scratchBlobs } from '../helpers/env';
import { TestS3, TEST_CREDENTIALS } from '../helpers/s3-server';
import { freePort } from '../helpers/temporal';

const BUCKET = 'keel-test';
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

let s3: TestS3;
const stores: S3BlobStore[] = [];

/** A store on the test server; every S3 command it sends is recorded in `sent`. */
function open(opts: Partial<S3BlobStoreOptions> = {}): { store: S3BlobStore; sent: string[] } {
  const store = new S3BlobStore({ bucket: BUCKET, endpoint: s3.endpoint, credentials: TEST_CREDENTIALS, prefix: `t-${process.pid}/`, ...opts });
  const sent: string[] = [];
  store.client.middlewareStack.add(
    (next, context) => async (args) => {
      sent.push(context.commandName ?? '?');
      return next(args);
    },
    { step: 'initialize', name: 'recordCommands' },
  );
  stores.push(store);
  return { store, sent };
}

async function readAll(store: S3BlobStore, id: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of await store.get(id)) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Every key under the store's prefix, and multipart uploads still open there. */
async function leftovers(store: S3BlobStore): Promise<{ keys: string[]; uploads: number }> {
  const { bucket, prefix } = store.options;
  const list = await store.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  const mp = await store.client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
  return { keys: (list.Contents ?? []).map((o) => o.Key ?? ''), uploads: (mp.Uploads ?? []).length };
}

const uploads = (sent: string[]): string[] => sent.filter((c) => /^(PutObject|UploadPart|CreateMultipartUpload|CompleteMultipartUpload)Command$/.test(c));

async function* chunks(parts: Buffer[], fail?: Error): AsyncGenerator<Buffer> {
  for (const p of parts) yield p;
  if (fail) throw fail;
}

before(async () => {
  s3 = await TestS3.start();
  await s3.createBucket(BUCKET);
});

after(async () => {
  for (const s of stores) s.destroy();
  await s3?.stop();
});

let prefixes = 0;
blobStoreContract('S3BlobStore', async () => {
  const { store } = open({ prefix: `t-${process.pid}-contract-${++prefixes}/` });
  // Failed writes would leave objects or open multipart uploads under the prefix.
  return {
    store,
    residue: async () => {
      const { keys, uploads: open } = await leftovers(store);
      return open > 0 ? [...keys, `${open} open multipart uploads`] : keys;
    },
  };
});

describe('S3BlobStore options', () => {
  it('fills defaults in one place', () => {
    const a = resolveS3BlobStoreOptions({ bucket: 'b' });
    assert.deepEqual(a, { bucket: 'b', prefix: 'keel/', region: 'us-east-1', forcePathStyle: false, headConcurrency: 32, partSize: 8 << 20 });
    const b = resolveS3BlobStoreOptions({ bucket: 'b', endpoint: 'http://minio:9000', prefix: '/team/x', region: 'eu-west-1' });
    assert.deepEqual([b.prefix, b.forcePathStyle, b.region, b.endpoint], ['team/x/', true, 'eu-west-1', 'http://minio:9000']);
    assert.equal(resolveS3BlobStoreOptions({ bucket: 'b', prefix: '' }).prefix, '');
    assert.throws(() => resolveS3BlobStoreOptions({ bucket: '' }), (e) => e instanceof BlobStoreConfigError && /KEEL_BLOB_S3_BUCKET/.test(e.message));
    assert.throws(() => resolveS3BlobStoreOptions({ bucket: 'b', partSize: 1 << 20 }), /at least/);
  });
});

describe('S3BlobStore', () => {
  it('stores by sha under <prefix>sha256/, once', async () => {
    const { store, sent } = open();
    const data = Buffer.from('hello blob\n');
    const id = sha(data);
    assert.deepEqual(await store.has([id]), [false]);
    assert.equal(await store.put(id, data), data.length);
    assert.equal(store.keyOf(id), `t-${process.pid}/sha256/${id}`);
    await store.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: store.keyOf(id) }));
    assert.deepEqual(await store.has([id, sha('other')]), [true, false]);

    sent.length = 0;
    assert.equal(await store.put(id, data), 0, 'a second put of the same content writes nothing');
    assert.deepEqual(uploads(sent), [], 'and sends no upload request');
    assert.deepEqual(sent, ['HeadObjectCommand']);
    assert.deepEqual(await readAll(store, id), data);
  });

  it('checks many shas with one HEAD each, the bucket once', async () => {
    const { store, sent } = open();
    const present = Array.from({ length: 10 }, (_, i) => Buffer.from(`present ${i}`));
    for (const p of present) await store.put(sha(p), p);
    const ask = [...present.map(sha), ...Array.from({ length: 90 }, (_, i) => sha(`absent ${i}`))];
    sent.length = 0;
    const answer = await store.has(ask);
    assert.deepEqual(answer, ask.map((_, i) => i < 10));
    assert.equal(sent.filter((c) => c === 'HeadObjectCommand').length, 100);
    assert.equal(sent.filter((c) => c === 'HeadBucketCommand').length, 0, 'the bucket was checked by the first call already');
    assert.deepEqual(await store.has([]), []);
  });

  it('round-trips a 20 MB blob as a multipart upload', async () => {
    const { store, sent } = open();
    const data = randomBytes(20 << 20);
    const id = sha(data);
    const parts = Array.from({ length: 20 }, (_, i) => data.subarray(i << 20, (i + 1) << 20));
    assert.equal(await store.put(id, chunks(parts)), data.length);
    assert.equal(sent.filter((c) => c === 'UploadPartCommand').length, 3, '8 + 8 + 4 MiB');
    assert.equal(sent.filter((c) => c === 'CompleteMultipartUploadCommand').length, 1);
    assert.ok((await readAll(store, id)).equals(data));

    sent.length = 0;
    assert.equal(await store.put(id, chunks(parts)), 0);
    assert.deepEqual(uploads(sent), [], 'a second put of 20 MB uploads nothing');
  });

  it('checks a small blob before sending anything, and aborts the parts of a large one that does not match', async () => {
    const { store, sent } = open({ prefix: `t-${process.pid}-mismatch/` });
    const wrong = sha('something else');
    await assert.rejects(store.put(wrong, Buffer.from('not that')), (e) => e instanceof BlobMismatchError && e.expected === wrong);
    assert.deepEqual(uploads(sent), [], 'a small blob is checked before anything is sent');
    // A large one has parts uploaded before the hash is known: they must never become an object.
    const big = Buffer.alloc(12 << 20, 7);
    await assert.rejects(store.put(wrong, chunks([big])), BlobMismatchError);
    assert.ok(sent.includes('AbortMultipartUploadCommand'));
    assert.deepEqual(await leftovers(store), { keys: [], uploads: 0 });
  });

  it('names the bucket when a blob is missing, and refuses keys that are not sha256 hex', async () => {
    const { store } = open();
    assert.throws(() => store.keyOf('../../etc/passwd'), /not a sha256/);
    await assert.rejects(store.get(sha('never stored')), (e) => e instanceof BlobMissingError && e.message.includes(`s3://${BUCKET}/`));
  });

  it('keeps prefixes apart', async () => {
    const a = open({ prefix: `t-${process.pid}-a` }).store;
    const b = open({ prefix: `t-${process.pid}-b` }).store;
    const data = Buffer.from('only in a');
    await a.put(sha(data), data);
    assert.deepEqual(await b.has([sha(data)]), [false]);
    assert.equal(await b.put(sha(data), data), data.length);
  });
});

describe('S3BlobStore errors', () => {
  it('a missing bucket says which, and how to fix it', async () => {
    const { store } = open({ bucket: 'no-such-bucket' });
    const expected = (e: unknown): boolean => {
      assert.ok(e instanceof BlobStoreConfigError, String(e));
      assert.match(e.message, /S3 bucket "no-such-bucket" does not exist at http:\/\/127\.0\.0\.1:\d+\. Create it .*KEEL_BLOB_S3_BUCKET/);
      return true;
    };
    await assert.rejects(store.has([sha('a')]), expected);
    await assert.rejects(store.put(sha('a'), Buffer.from('a')), expected);
    await assert.rejects(store.get(sha('a')), expected);
    await assert.rejects(store.getManifest(sha('a')), expected);
  });

  it('an endpoint nobody listens on is unavailable (retryable), not misconfigured', async () => {
    const { store } = open({ endpoint: `http://127.0.0.1:${await freePort()}` });
    await assert.rejects(store.has([sha('a')]), (e) => e instanceof BlobStoreUnavailableError && /ECONNREFUSED/.test(e.message));
  });

  it('refused credentials say which variables to check', async () => {
    const authed = await TestS3.start({ auth: true });
    try {
      const store = new S3BlobStore({ bucket: BUCKET, endpoint: authed.endpoint, credentials: { accessKeyId: 'AKIAWRONGWRONGWRONG1', secretAccessKey: 'x' } });
      stores.push(store);
      await assert.rejects(
        store.put(sha('a'), Buffer.from('a')),
        (e) => e instanceof BlobStoreConfigError && /AWS_ACCESS_KEY_ID/.test(e.message) && /AWS_SECRET_ACCESS_KEY/.test(e.message),
      );
    } finally {
      await authed.stop();
    }
  });
});

describe('snapshot and restore through S3', () => {
  const docker = new Docker();
  const sessionId = `test-s3-snap-${process.pid}-${Date.now().toString(36)}`;
  let runtime: SandboxRuntime | undefined;

  after(async () => {
    if (runtime) {
      const acts = createSandboxActivities({ runtime, blobs: scratchBlobs(), config: { hostId: 'test-host' } });
      await acts.destroySandbox({ sessionId }).catch(() => undefined);
      runtime.close();
    }
  });

  it('restores a file written in generation 1 into generation 2', { timeout: 900_000 }, async () => {
    const tag = defaultImageTag();
    await ensureImage(docker, tag, (line) => console.error(`[image] ${line}`));
    runtime = new SandboxRuntime(docker);
    const { store: blobs } = open({ prefix: `t-${process.pid}-snap/` });
    const acts = createSandboxActivities({ runtime, blobs, config: { hostId: 'test-host', defaultImage: tag } });

    const gen1 = await acts.provisionSandbox({ sessionId, spec: { memoryMb: 512 } });
    const big = `python3 -c "import random; random.seed(3); open('/workspace/big.bin','wb').write(random.randbytes(3<<20))"`;
    const made = await acts.runTool({ sessionId, handle: gen1, call: { id: 'c1', name: 'shell', input: { command: big } } });
    assert.equal(made.ok, true, made.output);
    const w = await acts.runTool({
      sessionId,
      handle: gen1,
      call: { id: 'c2', name: 'write_file', input: { path: 'notes/hello.txt', content: 'kept in S3\n' } },
      snapshot: {},
    });
    assert.equal(w.ok, true, w.output);
    const snap = w.snapshot;
    assert.ok(snap, 'write_file changed files, so a snapshot was taken');
    assert.ok(snap.uploadedBytes >= 3 << 20, `uploaded ${snap.uploadedBytes} B`);
    assert.ok(await blobs.getManifest(snap.id), 'the manifest is in the bucket');
    const sum = await acts.runTool({ sessionId, handle: gen1, call: { id: 'c3', name: 'shell', input: { command: 'sha256sum /workspace/big.bin' } } });

    await acts.destroySandbox({ sessionId });
    const gen2 = await acts.provisionSandbox({ sessionId, spec: { memoryMb: 512 }, generation: 2, restoreFrom: snap.id });
    assert.equal(gen2.generation, 2);
    assert.notEqual(gen2.containerId, gen1.containerId);
    const r = await acts.runTool({ sessionId, handle: gen2, call: { id: 'c4', name: 'read_file', input: { path: 'notes/hello.txt' } } });
    assert.equal(r.ok, true, r.output);
    assert.match(r.output, /kept in S3/);
    const sum2 = await acts.runTool({ sessionId, handle: gen2, call: { id: 'c5', name: 'shell', input: { command: 'sha256sum /workspace/big.bin' } } });
    assert.equal(sum2.output, sum.output, 'the 3 MB file came back byte for byte');
  });
});
