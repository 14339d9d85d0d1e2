/**
 * Content-addressed storage for snapshot file contents and manifests, kept
 * outside any Docker host so a session can be restored anywhere.
 */
import type { Readable } from 'node:stream';

/** What a blob is written from: whole, or as an ordered series of chunks. */
export type BlobSource = Buffer | AsyncIterable<Buffer>;

/**
 * A store of blobs named by the sha256 (lowercase hex) of their bytes. Writes are
 * atomic and verified: a blob is visible under a name only when its bytes hash to it.
 * Manifests are blobs too; the `*Manifest` methods just carry text.
 */
export interface BlobStore {
  /** For each sha, whether the store holds it (same order). */
  has(shas: readonly string[]): Promise<boolean[]>;
  /**
   * Store `source` under `sha` unless it is there already. Rejects with {@link BlobMismatchError}
   * when the bytes do not hash to `sha`, leaving nothing behind.
   * @returns bytes written; 0 when the store already had it.
   */
  put(sha: string, source: BlobSource): Promise<number>;
  /** A blob's bytes as a stream; rejects with {@link BlobMissingError} when absent. */
  get(sha: string): Promise<Readable>;
  /** Store manifest text (ASCII JSON) under its sha256, verified. */
  putManifest(id: string, text: string): Promise<void>;
  /** A manifest's text, or undefined when the store lacks it. */
  getManifest(id: string): Promise<string | undefined>;
  /**
   * Mark blobs as in use now: a writer that found them present (and so did not upload them)
   * is about to reference them. Garbage collection never removes a blob marked within its
   * grace period. Missing blobs are ignored.
   */
  keep(shas: readonly string[]): Promise<void>;
  /** Every blob, with when it was last written or kept (for garbage collection). */
  list(): AsyncIterable<BlobInfo>;
  /** Remove a blob; a missing one is not an error. */
  remove(sha: string): Promise<void>;
}

/** The read side of a store: enough to show diffs and outputs, from a live store or an exported bundle. */
export type BlobReader = Pick<BlobStore, 'get' | 'getManifest'>;

/** A stored blob as garbage collection sees it. */
export interface BlobInfo {
  sha: string;
  bytes: number;
  /** When it was last written or kept, ms since the epoch. */
  touchedAt: number;
}

/** The bytes given for a blob do not hash to its name. */
export class BlobMismatchError extends Error {
  constructor(readonly expected: string, readonly actual: string) {
    super(`blob content hashes to ${actual}, not ${expected}`);
    this.name = 'BlobMismatchError';
  }
}

/** No blob with this sha in the store. */
export class BlobMissingError extends Error {
  constructor(readonly sha: string, where: string) {
    super(`blob ${sha} is not in ${where}`);
    this.name = 'BlobMissingError';
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Throws unless `sha` is a lowercase sha256 hex digest (it becomes part of a path). */
export function assertSha(sha: string): void {
  if (!SHA256_HEX.test(sha)) throw new Error(`not a sha256 hex digest: ${JSON.stringify(sha).slice(0, 80)}`);
}

/** A whole blob in memory; for small blobs (file diffs, restores of small files). */
export async function readBlob(blobs: BlobReader, sha: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await blobs.get(sha)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
