/**
 * A {@link BlobStore} in a directory of the worker machine:
 * `<dir>/sha256/<2 hex>/<2 hex>/<sha>`, written to `<dir>/tmp` first and renamed into place.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, mkdir, open, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { assertSha, BlobMismatchError, BlobMissingError, type BlobInfo, type BlobSource, type BlobStore } from './store';

export class DirBlobStore implements BlobStore {
  private readonly tmp: string;
  private ready: Promise<void> | undefined;

  constructor(readonly dir: string) {
    this.tmp = join(dir, 'tmp');
  }

  /** Where a blob lives. Two levels of fan-out keep directories small at millions of blobs. */
  pathOf(sha: string): string {
    assertSha(sha);
    return join(this.dir, 'sha256', sha.slice(0, 2), sha.slice(2, 4), sha);
  }

  async has(shas: readonly string[]): Promise<boolean[]> {
    return Promise.all(shas.map((sha) => exists(this.pathOf(sha))));
  }

  async put(sha: string, source: BlobSource): Promise<number> {
    const final = this.pathOf(sha);
    if (await exists(final)) {
      await this.keep([sha]); // deduplicated: the caller will reference it, so it is in use now
      return 0;
    }
    this.ready ??= mkdir(this.tmp, { recursive: true }).then(() => undefined);
    await this.ready;
    const temp = join(this.tmp, `${sha}.${randomUUID()}`);
    const hash = createHash('sha256');
    let bytes = 0;
    const file = await open(temp, 'wx', 0o644);
    try {
      for await (const chunk of Buffer.isBuffer(source) ? [source] : source) {
        hash.update(chunk);
        bytes += chunk.length;
        await file.write(chunk);
      }
      await file.sync();
    } catch (err) {
      await file.close().catch(() => undefined);
      await rm(temp, { force: true });
      throw err;
    }
    await file.close();
    const actual = hash.digest('hex');
    if (actual !== sha) {
      await rm(temp, { force: true });
      throw new BlobMismatchError(sha, actual);
    }
    await mkdir(join(final, '..'), { recursive: true });
    // rename is atomic; a concurrent writer of the same sha wrote the same bytes.
    await rename(temp, final);
    return bytes;
  }

  async get(sha: string): Promise<Readable> {
    const path = this.pathOf(sha);
    if (!(await exists(path))) throw new BlobMissingError(sha, this.dir);
    return createReadStream(path, { highWaterMark: 1 << 20 });
  }

  async putManifest(id: string, text: string): Promise<void> {
    await this.put(id, Buffer.from(text, 'utf8'));
  }

  async getManifest(id: string): Promise<string | undefined> {
    const path = this.pathOf(id);
    if (!(await exists(path))) return undefined;
    const chunks: Buffer[] = [];
    for await (const chunk of createReadStream(path)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  }

  /** The file's times are when it was last written or kept: garbage collection reads them. */
  async keep(shas: readonly string[]): Promise<void> {
    const now = new Date();
    await Promise.all(shas.map((sha) => utimes(this.pathOf(sha), now, now).catch(() => undefined)));
  }

  async *list(): AsyncIterable<BlobInfo> {
    const root = join(this.dir, 'sha256');
    for (const a of await readdir(root).catch(() => [] as string[])) {
      for (const b of await readdir(join(root, a)).catch(() => [] as string[])) {
        for (const sha of await readdir(join(root, a, b)).catch(() => [] as string[])) {
          const st = await stat(join(root, a, b, sha)).catch(() => undefined);
          if (st) yield { sha, bytes: st.size, touchedAt: st.mtimeMs };
        }
      }
    }
  }

  async remove(sha: string): Promise<void> {
    await rm(this.pathOf(sha), { force: true });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
