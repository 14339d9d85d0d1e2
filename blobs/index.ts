/** Content-addressed blob storage for sandbox snapshots. */
export { assertSha, BlobMismatchError, BlobMissingError, readBlob, type BlobInfo, type BlobReader, type BlobSource, type BlobStore } from './store';
export { ContentCache, fitsInline, preview, putContent } from './content';
export { DirBlobStore } from './dir-store';
export { classifyBlobError } from './errors';
export {
  BlobStoreConfigError,
  BlobStoreUnavailableError,
  resolveS3BlobStoreOptions,
  S3BlobStore,
  type ResolvedS3BlobStoreOptions,
  type S3BlobStoreOptions,
} from './s3-store';
