/**
 * Connections to the three services Keel needs. A failure names the service,
 * what was tried and the command that fixes it, in one line.
 */
import { Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import Docker from 'dockerode';
import type { Sql } from 'postgres';
import { DirBlobStore, S3BlobStore, type BlobStore } from '../activities/blobs';
import { connect, migrate } from '../activities/store/db';
import type { KeelConfig } from './config';

export type ServiceName = 'Temporal' | 'Postgres' | 'Docker' | 'Sandbox image' | 'Model';

/** A service Keel cannot use; `fix` is a command or setting that resolves it. */
export class ServiceError extends Error {
  constructor(
    readonly service: ServiceName,
    message: string,
    readonly fix: string,
  ) {
    super(`${service}: ${message}. Fix: ${fix}`);
    this.name = 'ServiceError';
  }
}

function reason(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { message?: string } };
  const text = e?.cause?.message || e?.message || String(err);
  return (e?.code && !text.includes(e.code) ? `${e.code} ${text}` : text).split('\n')[0]!.slice(0, 200);
}

const TEMPORAL_FIX = 'start a dev server with `npx keel dev`, or set TEMPORAL_ADDRESS';

/** A client connection to Temporal. */
export async function connectTemporalClient(config: KeelConfig): Promise<Connection> {
  try {
    return await Connection.connect({ address: config.temporalAddress, connectTimeout: '3s' });
  } catch (err) {
    throw new ServiceError('Temporal', `cannot reach ${config.temporalAddress} (${reason(err)})`, TEMPORAL_FIX);
  }
}

/** A worker connection to Temporal. */
export async function connectTemporalWorker(config: KeelConfig): Promise<NativeConnection> {
  try {
    return await NativeConnection.connect({ address: config.temporalAddress });
  } catch (err) {
    throw new ServiceError('Temporal', `cannot reach ${config.temporalAddress} (${reason(err)})`, TEMPORAL_FIX);
  }
}

/** Postgres, with migrations applied. */
export async function connectDatabase(config: KeelConfig, opts: { migrate?: boolean } = {}): Promise<Sql> {
  const sql = connect(config.databaseUrl);
  try {
    if (opts.migrate ?? true) await migrate(sql);
    else await sql`select 1`;
    return sql;
  } catch (err) {
    await sql.end({ timeout: 1 }).catch(() => undefined);
    throw new ServiceError(
      'Postgres',
      `cannot use ${redactUrl(config.databaseUrl)} (${reason(err)})`,
      'run `npm run setup` to install and start a local server, or set DATABASE_URL',
    );
  }
}

/** The Docker Engine, checked with a ping. dockerode reads DOCKER_HOST itself. */
export async function connectDocker(config: KeelConfig): Promise<Docker> {
  const docker = new Docker();
  try {
    await docker.ping();
    return docker;
  } catch (err) {
    throw new ServiceError(
      'Docker',
      `no engine answers at ${config.dockerHost ?? '/var/run/docker.sock'} (${reason(err)})`,
      'run `npm run setup` (installs docker.io and starts dockerd), or set DOCKER_HOST',
    );
  }
}

/** `postgres://user:secret@host/db` without the secret, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable DATABASE_URL)';
  }
}

/** The snapshot blob store: S3-compatible when `KEEL_BLOB_S3_BUCKET` is set, else the directory `KEEL_BLOB_DIR`. */
export function openBlobStore(config: KeelConfig): { blobs: BlobStore; close: () => void } {
  if (config.blobS3) {
    const s3 = new S3BlobStore(config.blobS3);
    return { blobs: s3, close: () => s3.destroy() };
  }
  return { blobs: new DirBlobStore(config.blobDir), close: () => undefined };
}
