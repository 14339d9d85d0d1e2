/**
 * A {@link BlobStore} in an S3 bucket (AWS S3, or anything that speaks its API:
 * MinIO, Ceph RGW, moto): `<prefix>sha256/<sha>`.
 *
 * A blob becomes visible only after its bytes were hashed and found to match:
 * blobs up to `partSize` are buffered, hashed and sent in one PutObject (which is
 * atomic, and carries the sha256 so S3 checks it too); larger ones stream as a
 * multipart upload whose parts stay invisible until CompleteMultipartUpload, which
 * is sent only when the hash matches (otherwise the upload is aborted).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { assertSha, BlobMismatchError, BlobMissingError, type BlobInfo, type BlobSource, type BlobStore } from './store';

/**
 * A kept blob is copied onto itself (S3's only way to renew LastModified) when it was last
 * written longer ago than this, so keeping a popular blob costs a copy an hour, not one per use.
 */
const KEEP_REFRESH_MS = 3600_000;

/** How to reach the bucket. Resolved by {@link resolveS3BlobStoreOptions}. */
export interface S3BlobStoreOptions {
  /** The bucket; it must exist (Keel never creates buckets). Env `KEEL_BLOB_S3_BUCKET`. */
  bucket: string;
  /** Prefix of every key; a trailing `/` is added when missing. Env `KEEL_BLOB_S3_PREFIX`. @default 'keel/' */
  prefix?: string;
  /** Endpoint URL of an S3-compatible store (MinIO, Ceph, moto). Env `KEEL_BLOB_S3_ENDPOINT`. @default AWS S3 in `region` */
  endpoint?: string;
  /** Region to sign for; the SDK follows a redirect when the bucket lives elsewhere. Env `AWS_REGION`. @default 'us-east-1' */
  region?: string;
  /** Address buckets as `<endpoint>/<bucket>` rather than `<bucket>.<endpoint>`. @default true when `endpoint` is set, else false */
  forcePathStyle?: boolean;
  /**
   * Static credentials. Env `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`.
   * @default the AWS SDK's default chain (environment, shared config and SSO profiles, web identity, ECS/EC2 roles)
   */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** HeadObject requests in flight at once in {@link S3BlobStore.has}. @default 32 */
  headConcurrency?: number;
  /** Blobs up to this many bytes go up in one PutObject; larger ones in parts this size (S3's minimum is 5 MiB). @default 8 MiB */
  partSize?: number;
}

export type ResolvedS3BlobStoreOptions = Required<Omit<S3BlobStoreOptions, 'endpoint' | 'credentials'>> &
  Pick<S3BlobStoreOptions, 'endpoint' | 'credentials'>;

const MIN_PART = 5 << 20;

/** Fill every unset option with its default; throws on values S3 would refuse. */
export function resolveS3BlobStoreOptions(opts: S3BlobStoreOptions): ResolvedS3BlobStoreOptions {
  if (!opts.bucket) throw new BlobStoreConfigError('the S3 blob store needs a bucket (S3BlobStoreOptions.bucket, env KEEL_BLOB_S3_BUCKET)');
  const rawPrefix = (opts.prefix ?? 'keel/').replace(/^\/+/, '');
  const partSize = opts.partSize ?? 8 << 20;
  if (partSize < MIN_PART) throw new BlobStoreConfigError(`S3BlobStoreOptions.partSize must be at least ${MIN_PART} (5 MiB), not ${partSize}`);
  return {
    bucket: opts.bucket,
    prefix: rawPrefix && !rawPrefix.endsWith('/') ? `${rawPrefix}/` : rawPrefix,
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    region: opts.region || 'us-east-1',
    forcePathStyle: opts.forcePathStyle ?? Boolean(opts.endpoint),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    headConcurrency: Math.max(1, opts.headConcurrency ?? 32),
    partSize,
  };
}

/** The blob store is set up wrong (no such bucket, credentials refused, access denied); retrying cannot help. */
export class BlobStoreConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BlobStoreConfigError';
  }
}

/** The blob store did not answer or failed on its side; retrying later may help. */
export class BlobStoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BlobStoreUnavailableError';
  }
}

export class S3BlobStore implements BlobStore {
  readonly options: ResolvedS3BlobStoreOptions;
  /** The SDK client; call {@link destroy} to close its sockets. */
  readonly client: S3Client;
  private bucketChecked: Promise<void> | undefined;

  constructor(options: S3BlobStoreOptions) {
    this.options = resolveS3BlobStoreOptions(options);
    const o = this.options;
    this.client = new S3Client({
      region: o.region,
      forcePathStyle: o.forcePathStyle,
      followRegionRedirects: true,
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      ...(o.credentials ? { credentials: o.credentials } : {}),
    });
  }

  /** Where the store lives, for messages: `s3://bucket/prefix` (plus the endpoint when not AWS). */
  get where(): string {
    const o = this.options;
    return `s3://${o.bucket}/${o.prefix}${o.endpoint ? ` at ${o.endpoint}` : ''}`;
  }

  /** A blob's key. No fan-out: S3 has no directories, and sha256 hex already spreads keys evenly over partitions. */
  keyOf(sha: string): string {
    assertSha(sha);
    return `${this.options.prefix}sha256/${sha}`;
  }

  /**
   * One HeadObject per sha, `headConcurrency` at a time. Listing instead would cost
   * pages in proportion to the whole bucket (every session's blobs), while callers ask
   * about the few files a step changed.
   */
  async has(shas: readonly string[]): Promise<boolean[]> {
    const keys = shas.map((sha) => this.keyOf(sha));
    await this.checkBucket();
    const out = new Array<boolean>(keys.length).fill(false);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < keys.length) {
        const i = next++;
        out[i] = await this.exists(keys[i] as string);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.headConcurrency, keys.length) }, worker));
    return out;
  }

  async put(sha: string, source: BlobSource): Promise<number> {
    const key = this.keyOf(sha);
    await this.checkBucket();
    const stored = await this.head(key);
    if (stored) {
      await this.refresh(key, stored); // deduplicated: the caller will reference it, so it is in use now
      return 0;
    }
    const { bucket, partSize } = this.options;
    const hash = createHash('sha256');
    let bytes = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    // The multipart upload in progress, if the blob outgrew one part; completed only once the hash matches.
    const multipart: { id: string | undefined; parts: CompletedPart[] } = { id: undefined, parts: [] };
    const sendPart = async (): Promise<void> => {
      multipart.id ??= await this.createUpload(key);
      const PartNumber = multipart.parts.length + 1;
      const body = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      const r = await this.client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: multipart.id, PartNumber, Body: body }));
      multipart.parts.push({ PartNumber, ETag: r.ETag });
    };
    try {
      for await (const chunk of Buffer.isBuffer(source) ? [source] : source) {
        hash.update(chunk);
        bytes += chunk.length;
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= partSize) await sendPart();
      }
      const actual = hash.digest('hex');
      if (actual !== sha) throw new BlobMismatchError(sha, actual);
      if (multipart.id === undefined) {
        const body = Buffer.concat(pending, pendingBytes);
        const ChecksumSHA256 = Buffer.from(sha, 'hex').toString('base64');
        await this.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length, ChecksumSHA256 }));
      } else {
        if (pendingBytes > 0) await sendPart();
        const { id, parts } = multipart;
        await this.client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: id, MultipartUpload: { Parts: parts } }));
      }
    } catch (err) {
      if (multipart.id !== undefined) {
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: multipart.id })).catch(() => undefined);
      }
      throw this.classify(err);
    }
    return bytes;
  }

  async get(sha: string): Promise<Readable> {
    const body = await this.getBody(sha);
    if (body === undefined) throw new BlobMissingError(sha, this.where);
    return body;
  }

  async putManifest(id: string, text: string): Promise<void> {
    await this.put(id, Buffer.from(text, 'utf8'));
  }

  async getManifest(id: string): Promise<string | undefined> {
    const body = await this.getBody(id);
    if (body === undefined) return undefined;
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of body) chunks.push(chunk as Buffer);
    } catch (err) {
      throw this.classify(err);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  async keep(shas: readonly string[]): Promise<void> {
    const keys = shas.map((sha) => this.keyOf(sha));
    await this.checkBucket();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < keys.length) {
        const key = keys[next++] as string;
        const stored = await this.head(key);
        if (stored) await this.refresh(key, stored);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.options.headConcurrency, keys.length) }, worker));
  }

  async *list(): AsyncIterable<BlobInfo> {
    const prefix = `${this.options.prefix}sha256/`;
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }));
      } catch (err) {
        throw this.classify(err);
      }
      for (const o of page.Contents ?? []) {
        const sha = (o.Key ?? '').slice(prefix.length);
        if (/^[0-9a-f]{64}$/.test(sha)) yield { sha, bytes: o.Size ?? 0, touchedAt: o.LastModified?.getTime() ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async remove(sha: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.keyOf(sha) }));
    } catch (err) {
      throw this.classify(err);
    }
  }

  /** Close the client's sockets. The store cannot be used afterwards. */
  destroy(): void {
    this.client.destroy();
  }

  /**
   * Once per store, ask for the bucket itself: HeadObject answers a bare 404 both for a
   * missing key and a missing bucket, so without this `has` would say "absent" forever
   * to a store whose bucket does not exist. A failure is not cached.
   */
  private checkBucket(): Promise<void> {
    this.bucketChecked ??= this.client.send(new HeadBucketCommand({ Bucket: this.options.bucket })).then(
      () => undefined,
      (err: unknown) => {
        this.bucketChecked = undefined;
        if (statusOf(err) === 404) throw this.noSuchBucket(err);
        throw this.classify(err);
      },
    );
    return this.bucketChecked;
  }

  private async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== undefined;
  }

  /** Copy an object onto itself when its LastModified is old, so garbage collection sees it as in use. */
  private async refresh(key: string, lastModified: Date): Promise<void> {
    if (Date.now() - lastModified.getTime() < KEEP_REFRESH_MS) return;
    const { bucket } = this.options;
    try {
      await this.client.send(
        new CopyObjectCommand({ Bucket: bucket, Key: key, CopySource: `${bucket}/${key}`, MetadataDirective: 'REPLACE', Metadata: { kept: String(Date.now()) } }),
      );
    } catch (err) {
      throw this.classify(err);
    }
  }

  /** An object's LastModified, or undefined when there is no such key. */
  private async head(key: string): Promise<Date | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: key }));
      return r.LastModified ?? new Date(0);
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      if (statusOf(err) === 403) {
        throw new BlobStoreConfigError(
          `S3 refused HeadObject on ${key} in ${this.where} (HTTP 403). S3 answers 403 rather than 404 for a missing key when the credentials lack s3:ListBucket; ` +
            `grant s3:ListBucket, s3:GetObject and s3:PutObject on the bucket (and check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).`,
          { cause: err },
        );
      }
      throw this.classify(err);
    }
  }

  private async createUpload(key: string): Promise<string> {
    const r = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.options.bucket, Key: key }));
    if (!r.UploadId) throw new BlobStoreUnavailableError(`S3 CreateMultipartUpload for ${key} in ${this.where} returned no UploadId`);
    return r.UploadId;
  }

  /** The object's bytes, or undefined when there is no such key. */
  private async getBody(sha: string): Promise<Readable | undefined> {
    const key = this.keyOf(sha);
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: key }));
      if (!(r.Body instanceof Readable)) throw new Error(`S3 GetObject for ${key} returned no Node stream`);
      return r.Body;
    } catch (err) {
      if (nameOf(err) === 'NoSuchKey') return undefined;
      throw this.classify(err);
    }
  }

  private noSuchBucket(cause: unknown): BlobStoreConfigError {
    const { bucket } = this.options;
    return new BlobStoreConfigError(
      `S3 bucket "${bucket}" does not exist${this.options.endpoint ? ` at ${this.options.endpoint}` : ` in ${this.options.region}`}. ` +
        `Create it (\`aws s3 mb s3://${bucket}\`) or name an existing one (S3BlobStoreOptions.bucket, env KEEL_BLOB_S3_BUCKET).`,
      { cause },
    );
  }

  /** Map an SDK or network failure to {@link BlobStoreConfigError} or {@link BlobStoreUnavailableError}; anything else unchanged. */
  private classify(err: unknown): unknown {
    if (err instanceof BlobMismatchError || err instanceof BlobMissingError || err instanceof BlobStoreConfigError || err instanceof BlobStoreUnavailableError) {
      return err;
    }
    const name = nameOf(err);
    const status = statusOf(err);
    // Responses to HEAD have no body, so the SDK can only say "Unknown"/"UnknownError": show the status instead.
    const message = (err as Error)?.message ?? String(err);
    const detail = [name !== 'Unknown' && name, status && `HTTP ${status}`, message !== 'UnknownError' && message !== name && message].filter(Boolean).join(' ');
    if (name === 'NoSuchBucket') return this.noSuchBucket(err);
    if (name === 'CredentialsProviderError') {
      return new BlobStoreConfigError(
        `no AWS credentials for ${this.where} (${detail}). Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or give the host a role).`,
        { cause: err },
      );
    }
    if (name !== undefined && CREDENTIAL_ERRORS.has(name)) {
      return new BlobStoreConfigError(`S3 refused the credentials for ${this.where} (${detail}). Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.`, {
        cause: err,
      });
    }
    if (status === 403 || name === 'AccessDenied' || name === 'AllAccessDisabled') {
      return new BlobStoreConfigError(
        `S3 denied access to ${this.where} (${detail}): the credentials are wrong, or lack s3:ListBucket, s3:GetObject and s3:PutObject on the bucket. ` +
          `Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the bucket policy.`,
        { cause: err },
      );
    }
    if (name === 'PermanentRedirect' || name === 'AuthorizationHeaderMalformed' || status === 301) {
      return new BlobStoreConfigError(`bucket ${this.options.bucket} is not in region ${this.options.region} (${detail}). Set AWS_REGION to the bucket's region.`, {
        cause: err,
      });
    }
    const code = (err as { code?: unknown })?.code;
    if ((typeof code === 'string' && NETWORK_CODES.has(code)) || name === 'TimeoutError' || (name !== undefined && SERVER_ERRORS.has(name)) || (status !== undefined && status >= 500)) {
      return new BlobStoreUnavailableError(`S3 at ${this.options.endpoint ?? `region ${this.options.region}`} is unavailable (${detail}); retry later.`, { cause: err });
    }
    return err;
  }
}

const CREDENTIAL_ERRORS = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'InvalidToken', 'ExpiredToken', 'TokenRefreshRequired', 'InvalidSecurity']);
const SERVER_ERRORS = new Set(['SlowDown', 'ServiceUnavailable', 'InternalError', 'RequestTimeout']);
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EPIPE']);

function nameOf(err: unknown): string | undefined {
  const name = (err as { name?: unknown })?.name;
  return typeof name === 'string' ? name : undefined;
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}
