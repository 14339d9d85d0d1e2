/** Content-addressed blob storage for sandbox snapshots. */
export { assertSha, BlobMismatchError, BlobMissingError, type BlobSource, type BlobStore } from './store';
export { DirBlobStore } from './dir-store';
