/**
 * Failure classification at the sandbox activity boundary. Each `type` is one
 * thing a workflow handles differently.
 */
import { ApplicationFailure } from '@temporalio/common';

/** Failure types thrown by sandbox activities. */
export const SandboxFailure = {
  /** The image is not on this host; retrying cannot help until someone builds it. */
  ImageMissing: 'Sandbox.ImageMissing',
  /** The Docker daemon did not answer; retryable. */
  DockerUnavailable: 'Sandbox.DockerUnavailable',
  /** The session's container no longer exists or stopped. */
  ContainerGone: 'Sandbox.ContainerGone',
  /** The executor inside the container did not answer in time; retryable (the idempotency key makes it safe). */
  ExecutorTimeout: 'Sandbox.ExecutorTimeout',
  /** The S3 blob store's bucket, region or credentials are wrong; retrying cannot help. */
  BlobStoreMisconfigured: 'Sandbox.BlobStoreMisconfigured',
  /** The blob store did not answer (network, 5xx, throttling); retryable. */
  BlobStoreUnavailable: 'Sandbox.BlobStoreUnavailable',
  /** A snapshot to restore from, or to compare with, is not in the blob store; retrying cannot help. */
  SnapshotMissing: 'Sandbox.SnapshotMissing',
  /** Two sessions' containers would share a name (a session id that ends like a generation suffix); not retryable. */
  NameConflict: 'Sandbox.NameConflict',
} as const;

interface DockerishError {
  statusCode?: number;
  code?: string;
  message?: string;
}

/** A Docker client error that means the daemon itself could not be reached. */
export function isDockerUnreachable(err: unknown): boolean {
  const code = (err as DockerishError)?.code;
  return code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES' || code === 'ECONNRESET' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH';
}

export function statusOf(err: unknown): number | undefined {
  return (err as DockerishError)?.statusCode;
}

export function dockerUnavailable(err: unknown): ApplicationFailure {
  const msg = (err as DockerishError)?.message ?? String(err);
  return ApplicationFailure.retryable(
    `Docker is unreachable (${msg}). Is dockerd running? Set DOCKER_HOST for a non-default endpoint (default unix:///var/run/docker.sock).`,
    SandboxFailure.DockerUnavailable,
  );
}

export function imageMissing(image: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `Sandbox image ${image} is not on this Docker host. Build it with \`npm run setup\` or \`bash sandbox/build.sh ${image}\`.`,
    SandboxFailure.ImageMissing,
  );
}

export function containerGone(containerId: string, detail: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `Sandbox container ${containerId.slice(0, 12)} is gone (${detail}).`,
    SandboxFailure.ContainerGone,
  );
}

/** Rethrow Docker connection errors as `Sandbox.DockerUnavailable`; anything else unchanged. */
export function classifyDockerError(err: unknown): unknown {
  return isDockerUnreachable(err) ? dockerUnavailable(err) : err;
}

export function snapshotMissing(id: string): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `Snapshot ${id} is not in the blob store. Every sandbox host must use the same blob store: the same KEEL_BLOB_DIR, or the same KEEL_BLOB_S3_BUCKET (and endpoint and prefix).`,
    SandboxFailure.SnapshotMissing,
  );
}
