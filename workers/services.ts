/**
 * Connections to the services a worker needs. A failure names the service,
 * what was tried and the command that fixes it, in one line.
 */
import { NativeConnection } from '@temporalio/worker';
import Docker from 'dockerode';
import { DirBlobStore, S3BlobStore, type BlobStore } from '../blobs';
import { reasonOf, ServiceError } from '../common/errors';
import { poolImageProblems } from '../host/custom-image';
import { knownRuntimes, runtimeFix } from '../host/runtimes';
import { connect, migrate, SchemaOutdatedError, type Sql } from '../store';
import { TEMPORAL_FIX } from '../client/connection';
import type { KeelConfig } from './config';

/** A worker connection to Temporal. */
export async function connectTemporalWorker(config: KeelConfig): Promise<NativeConnection> {
  try {
    return await NativeConnection.connect({ address: config.temporalAddress });
  } catch (err) {
    throw new ServiceError('Temporal', `cannot reach ${config.temporalAddress} (${reasonOf(err)})`, TEMPORAL_FIX);
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
    if (err instanceof SchemaOutdatedError) {
      throw new ServiceError('Postgres', `${redactUrl(config.databaseUrl)}: ${err.message}`, 'run `npx keel migrate` with KEEL_DATABASE_OWNER_URL set to the role that owns the tables');
    }
    throw new ServiceError(
      'Postgres',
      `cannot use ${redactUrl(config.databaseUrl)} (${reasonOf(err)})`,
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
      `no engine answers at ${config.dockerHost ?? '/var/run/docker.sock'} (${reasonOf(err)})`,
      'run `npm run setup` (installs docker.io and starts dockerd), or set DOCKER_HOST',
    );
  }
}

/** Refuse to serve sandboxes under a runtime dockerd has not registered (`KEEL_SANDBOX_RUNTIME`). */
export async function checkSandboxRuntime(docker: Docker, runtime: string): Promise<void> {
  const known = await knownRuntimes(docker);
  if (!known.includes(runtime)) {
    throw new ServiceError('Docker', `dockerd has no runtime "${runtime}" (KEEL_SANDBOX_RUNTIME); it has ${known.join(', ')}`, runtimeFix(runtime));
  }
}

/**
 * Refuse to pool images (`KEEL_POOL_IMAGES`) that are missing on this Docker host or break the sandbox
 * contract: every one is checked, and the error lists each that failed, with its fix.
 */
export async function checkPoolImages(docker: Docker, images: readonly string[]): Promise<void> {
  const problems = await poolImageProblems(docker, images);
  if (problems.length) {
    throw new ServiceError(
      'Sandbox image',
      `KEEL_POOL_IMAGES names ${problems.length === 1 ? 'an image' : `${problems.length} images`} this host cannot pool:\n- ${problems.join('\n- ')}`,
      'each image\'s fix is given above (`npx keel doctor` runs the same check without starting a worker)',
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

/** The blob store: S3-compatible when `KEEL_BLOB_S3_BUCKET` is set, else the directory `KEEL_BLOB_DIR`. */
export function openBlobStore(config: KeelConfig): { blobs: BlobStore; close: () => void } {
  if (config.blobS3) {
    const s3 = new S3BlobStore(config.blobS3);
    return { blobs: s3, close: () => s3.destroy() };
  }
  return { blobs: new DirBlobStore(config.blobDir), close: () => undefined };
}
