/**
 * Blob-store failures as the Temporal boundary reports them (`Blob.*` in
 * common/failures.ts), shared by every activity that touches the store.
 */
import { failure, BlobFailure } from '../common/failures';
import { BlobStoreConfigError, BlobStoreUnavailableError } from './s3-store';
import { BlobMissingError } from './store';

/** The `Blob.*` failure for a blob-store error, or undefined when `err` is something else. */
export function classifyBlobError(err: unknown): ReturnType<typeof failure> | undefined {
  if (err instanceof BlobStoreConfigError) return failure(BlobFailure.Misconfigured, err.message);
  if (err instanceof BlobStoreUnavailableError) return failure(BlobFailure.Unavailable, err.message);
  if (err instanceof BlobMissingError) {
    return failure(
      BlobFailure.Missing,
      `${err.message}. Every worker must use the same blob store: the same KEEL_BLOB_DIR, or the same KEEL_BLOB_S3_BUCKET (and endpoint and prefix).`,
    );
  }
  return undefined;
}
