/**
 * Keel's failure vocabulary: every `ApplicationFailure` type an activity throws
 * and a workflow or client branches on, and whether Temporal retries it.
 *
 * Failures are classified once, at the activity boundary (`activities/<x>/errors.ts`),
 * with {@link failure}; everything else compares `type` with these constants,
 * never with a string literal. Pure code: safe for workflows.
 */
import { ApplicationFailure } from '@temporalio/common';

/** Failures of sandbox activities. */
export const SandboxFailure = {
  /** The image is not on this host; retrying cannot help until someone builds it. */
  ImageMissing: 'Sandbox.ImageMissing',
  /** The session asks for a Docker runtime (e.g. runsc) this host's dockerd has not registered; not retried. */
  RuntimeMissing: 'Sandbox.RuntimeMissing',
  /** The sandbox's /workspace filesystem could not be made (needs root on the Docker host); not retried. */
  DiskUnavailable: 'Sandbox.DiskUnavailable',
  /** The Docker daemon did not answer; retried. */
  DockerUnavailable: 'Sandbox.DockerUnavailable',
  /** The session's container no longer exists or stopped; the workflow restores it from the last snapshot. */
  ContainerGone: 'Sandbox.ContainerGone',
  /** The executor inside the container did not answer in time; retried (the idempotency key makes it safe). */
  ExecutorTimeout: 'Sandbox.ExecutorTimeout',
  /** A snapshot to restore from, or to compare with, is not in the blob store; retrying cannot help. */
  SnapshotMissing: 'Sandbox.SnapshotMissing',
  /** Two sessions' containers would share a name; not retried. */
  NameConflict: 'Sandbox.NameConflict',
  /** A request outside its bounds (a sandbox spec that would lift a limit, a bad generation); not retried. */
  BadRequest: 'Sandbox.BadRequest',
} as const;

/** Failures of the blob store, wherever it is used (snapshots, stored tool outputs, transcripts). */
export const BlobFailure = {
  /** The store's bucket, region or credentials are wrong; retrying cannot help. */
  Misconfigured: 'Blob.Misconfigured',
  /** The store did not answer (network, 5xx, throttling); retried. */
  Unavailable: 'Blob.Unavailable',
  /** Content the event log refers to is not in the store: workers do not share one store; not retried. */
  Missing: 'Blob.Missing',
} as const;

/** Failures of the event store. */
export const StoreFailure = {
  /** Postgres cannot be reached right now; retried. */
  Unavailable: 'Store.Unavailable',
  /** Postgres refused the data itself (SQLSTATE class 22 or 23): a bug, not an outage; not retried. */
  BadData: 'Store.BadData',
} as const;

/** Failures of model calls. */
export const ModelFailure = {
  /** HTTP 429; retried after the provider's `retry-after`. */
  RateLimit: 'Model.RateLimit',
  /** HTTP 401/403: the worker's key was refused; not retried. */
  Auth: 'Model.Auth',
  /** Another 4xx, or a request Keel refuses to send; not retried. */
  BadRequest: 'Model.BadRequest',
  /** 5xx, 408, network errors and timeouts; retried. */
  Unavailable: 'Model.Unavailable',
  /** A provider without its key or base URL; not retried (the message names the variable to set). */
  NotConfigured: 'Model.NotConfigured',
  /** A scripted model ran out of turns; not retried. */
  ScriptExhausted: 'Model.ScriptExhausted',
  /** A response too large or too deeply nested to parse safely (activities/model/response-guard.ts); not retried. */
  BadResponse: 'Model.BadResponse',
} as const;

/** Failures of webhook deliveries (activities/webhooks.ts). */
export const WebhookFailure = {
  /** The receiver answered 4xx (other than 408 and 429): it will not take this delivery; not retried. */
  Rejected: 'Webhook.Rejected',
  /** Network error, timeout, 5xx, 408 or 429; retried with backoff. */
  Unavailable: 'Webhook.Unavailable',
  /** The workers have no KEEL_WEBHOOK_SECRET to sign with; not retried. */
  NotConfigured: 'Webhook.NotConfigured',
} as const;

export const McpFailure = {
  /** The session names an MCP server the worker's KEEL_MCP_CONFIG does not configure; not retried. */
  NotConfigured: 'Mcp.NotConfigured',
  /** A configured MCP server could not be started or did not list its tools; retried a few times. */
  Unavailable: 'Mcp.Unavailable',
  /** A server of the session's sandbox (`mcpSandbox`) did not start or list its tools at the session's start; not retried. */
  SandboxUnavailable: 'Mcp.SandboxUnavailable',
} as const;

type ValueOf<T> = T[keyof T];
export type FailureType =
  | ValueOf<typeof SandboxFailure>
  | ValueOf<typeof BlobFailure>
  | ValueOf<typeof StoreFailure>
  | ValueOf<typeof ModelFailure>
  | ValueOf<typeof WebhookFailure>
  | ValueOf<typeof McpFailure>;

/** Whether Temporal retries each failure type: the one place this is decided. */
export const RETRYABLE: Readonly<Record<FailureType, boolean>> = {
  'Sandbox.ImageMissing': false,
  'Sandbox.RuntimeMissing': false,
  'Sandbox.DiskUnavailable': false,
  'Sandbox.DockerUnavailable': true,
  'Sandbox.ContainerGone': false,
  'Sandbox.ExecutorTimeout': true,
  'Sandbox.SnapshotMissing': false,
  'Sandbox.NameConflict': false,
  'Sandbox.BadRequest': false,
  'Blob.Misconfigured': false,
  'Blob.Unavailable': true,
  'Blob.Missing': false,
  'Store.Unavailable': true,
  'Store.BadData': false,
  'Model.RateLimit': true,
  'Model.Auth': false,
  'Mcp.NotConfigured': false,
  'Mcp.Unavailable': true,
  'Mcp.SandboxUnavailable': false,
  'Model.BadRequest': false,
  'Model.Unavailable': true,
  'Model.NotConfigured': false,
  'Model.ScriptExhausted': false,
  'Model.BadResponse': false,
  'Webhook.Rejected': false,
  'Webhook.Unavailable': true,
  'Webhook.NotConfigured': false,
};

export interface FailureOptions {
  /** Structured details for the caller (e.g. an HTTP status). Never secrets. */
  details?: unknown[];
  /** Overrides the retry policy's next interval (e.g. from `retry-after`). Only for retryable types. */
  nextRetryDelayMs?: number;
  cause?: Error;
}

/** An `ApplicationFailure` of a known type, retryable exactly when {@link RETRYABLE} says so. */
export function failure(type: FailureType, message: string, opts: FailureOptions = {}): ApplicationFailure {
  return ApplicationFailure.create({
    type,
    message,
    nonRetryable: !RETRYABLE[type],
    ...(opts.details ? { details: opts.details } : {}),
    ...(opts.nextRetryDelayMs !== undefined && opts.nextRetryDelayMs > 0 ? { nextRetryDelay: opts.nextRetryDelayMs } : {}),
    ...(opts.cause ? { cause: opts.cause } : {}),
  });
}

/** The `type` of the first `ApplicationFailure` in an error's cause chain (activity failures wrap it). */
export function failureTypeOf(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof ApplicationFailure) return e.type ?? undefined;
  }
  return undefined;
}
