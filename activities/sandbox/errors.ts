/**
 * Failure classification at the sandbox activity boundary: every error a sandbox
 * activity can meet becomes one of the `Sandbox.*` failures of `common/failures.ts`,
 * or passes through unchanged when it is a bug.
 */
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { classifyBlobError } from '../../blobs';
import { failure, SandboxFailure } from '../../common/failures';
import { DiskError } from '../../host/disks';
import { isDockerUnreachable } from '../../host/docker-errors';
import { ExecutorGoneError, ExecutorTimeoutError } from '../../host/executor-client';
import { runtimeFix } from '../../host/runtimes';
import { SnapshotMissingError } from '../../host/snapshots';

export function dockerUnavailable(err: unknown): ApplicationFailure {
  const msg = (err as { message?: string })?.message ?? String(err);
  return failure(
    SandboxFailure.DockerUnavailable,
    `Docker is unreachable (${msg}). Is dockerd running? Set DOCKER_HOST for a non-default endpoint (default unix:///var/run/docker.sock).`,
  );
}

export function imageMissing(image: string): ApplicationFailure {
  return failure(
    SandboxFailure.ImageMissing,
    `Sandbox image ${image} is not on this Docker host. Build it with \`npx keel image --build\` or \`bash sandbox/build.sh ${image}\`.`,
  );
}

export function runtimeMissing(runtime: string, known: string[], hostId: string): ApplicationFailure {
  return failure(
    SandboxFailure.RuntimeMissing,
    `Docker on sandbox host ${hostId} has no runtime "${runtime}" (it has: ${known.join(', ') || 'none listed'}). Fix: ${runtimeFix(runtime)}.`,
  );
}

export function containerGone(containerId: string, detail: string): ApplicationFailure {
  return failure(SandboxFailure.ContainerGone, `Sandbox container ${containerId.slice(0, 12)} is gone (${detail}).`);
}

export function snapshotMissing(id: string): ApplicationFailure {
  return failure(
    SandboxFailure.SnapshotMissing,
    `Snapshot ${id} is not in the blob store. Every worker must use the same blob store: the same KEEL_BLOB_DIR, or the same KEEL_BLOB_S3_BUCKET (and endpoint and prefix).`,
  );
}

export function badRequest(message: string): ApplicationFailure {
  return failure(SandboxFailure.BadRequest, message);
}

/** Rethrow Docker connection errors as `Sandbox.DockerUnavailable`; anything else unchanged. */
export function classifyDockerError(err: unknown): unknown {
  return isDockerUnreachable(err) ? dockerUnavailable(err) : err;
}

/** Classify a failure of a call into a known container; `key` (the idempotency key) goes into timeout messages. */
export function classifySandboxError(err: unknown, containerId: string, key?: string): unknown {
  if (err instanceof ApplicationFailure || err instanceof CancelledFailure) return err;
  if (err instanceof ExecutorGoneError) return containerGone(containerId, err.detail);
  if (err instanceof SnapshotMissingError) return snapshotMissing(err.id);
  if (err instanceof DiskError) return failure(SandboxFailure.DiskUnavailable, err.message);
  const blob = classifyBlobError(err);
  if (blob) return blob;
  if (err instanceof ExecutorTimeoutError) {
    return failure(SandboxFailure.ExecutorTimeout, `${err.message}${key ? `; the retry reuses key ${key}` : ''}`);
  }
  return classifyDockerError(err);
}
