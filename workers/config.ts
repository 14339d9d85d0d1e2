/**
 * The one place Keel reads its environment. Every option, its variable and its default.
 * Activities never read process.env: workers build them from this config.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { S3BlobStoreOptions } from '../blobs';
import { resolveConnectionOptions } from '../client/connection';
import { keelRoot } from '../host/paths';

export interface KeelConfig {
  /** Temporal frontend, `host:port`. Env `TEMPORAL_ADDRESS`. @default 'localhost:7233' */
  temporalAddress: string;
  /** Env `TEMPORAL_NAMESPACE`. @default 'default' */
  temporalNamespace: string;
  /** Temporal Web UI, for links. Env `KEEL_TEMPORAL_UI`. @default 'http://localhost:8233' */
  temporalUi: string;
  /** Postgres for events and the session index. Env `DATABASE_URL`. @default 'postgres://keel:keel@localhost:5432/keel' */
  databaseUrl: string;
  /**
   * The role that owns Keel's tables, for `keel migrate` only; workers and the CLI use `databaseUrl`, whose
   * role may only read and append events. Env `KEEL_DATABASE_OWNER_URL`. @default `databaseUrl`
   */
  databaseOwnerUrl: string;
  /** Docker Engine API endpoint, read by dockerode itself. Env `DOCKER_HOST`. @default the local socket /var/run/docker.sock */
  dockerHost?: string;
  /** Names this sandbox host; its worker polls `keel-sandbox-<hostId>`. Env `KEEL_HOST_ID`. @default the machine's hostname */
  hostId: string;
  /**
   * Sandbox image for sessions that do not name one. Env `KEEL_SANDBOX_IMAGE`.
   * @default unset: the sandbox host uses `keel-sandbox:<hash of sandbox/>` (see `defaultImageTag`)
   */
  sandboxImage?: string;
  /** What a `keel worker` process runs: `all`, `session` (workflows, model, store) or `sandbox`. Env `KEEL_WORKER_ROLE`. @default 'all' */
  workerRole: 'all' | 'session' | 'sandbox';
  /** Path of the `temporal` CLI. Env `TEMPORAL_CLI`. @default `temporal` on PATH, else `.keel/tools/venv/bin/temporal` */
  temporalCli?: string;
  /** Extra arguments for `temporal server start-dev`, space-separated. Env `KEEL_DEV_SERVER_ARGS`. @default none */
  devServerArgs: string[];
  /** Where `keel dev` keeps Temporal's state. Env `KEEL_STATE_DIR`. @default '<project>/.keel' */
  stateDir: string;
  /** Where snapshot blobs live (outside any container). Env `KEEL_BLOB_DIR`. @default '<project>/.keel/blobs' */
  blobDir: string;
  /**
   * S3-compatible blob store for snapshots; when set it replaces `blobDir`. Env `KEEL_BLOB_S3_BUCKET` (turns it on),
   * `KEEL_BLOB_S3_PREFIX`, `KEEL_BLOB_S3_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
   * `AWS_SESSION_TOKEN` (unset: the AWS SDK's default chain). @default unset (a directory store in `blobDir`)
   */
  blobS3?: S3BlobStoreOptions;
  /**
   * Pre-started containers a sandbox-host worker keeps ready (never reused across sessions);
   * 2 is a good value on a sandbox host. Env `KEEL_POOL_SIZE`. @default 0 (off)
   */
  poolSize: number;
  /**
   * How often a sandbox-host worker removes containers of ended sessions, and a session worker reconciles
   * live sessions with Temporal; 0 turns both off. Env `KEEL_REAP_INTERVAL_SEC`. @default 60
   */
  reapIntervalSec: number;
  /** How often a session worker collects blob garbage; 0 turns it off. Env `KEEL_GC_INTERVAL_SEC`. @default 21600 (6 hours) */
  gcIntervalSec: number;
  /** Sessions that ended more than this many days ago no longer keep their blobs. Env `KEEL_RETENTION_DAYS`. @default 30 */
  retentionDays: number;
  /** Garbage collection never removes a blob written or kept this recently. Env `KEEL_GC_GRACE_SEC`. @default 86400 */
  gcGraceSec: number;
  /**
   * Workflow tasks the session worker processes at once (`maxConcurrentWorkflowTaskExecutions`).
   * Env `KEEL_MAX_WORKFLOW_TASKS`. @default 40 (the SDK's)
   */
  maxWorkflowTasks: number;
  /**
   * Event writes (local activities) the session worker runs at once (`maxConcurrentLocalActivityExecutions`).
   * Env `KEEL_MAX_LOCAL_ACTIVITIES`. @default 100 (the SDK's)
   */
  maxLocalActivities: number;
  /**
   * Activities each sandbox-host worker (shared and host queue) runs at once (`maxConcurrentActivityTaskExecutions`).
   * A session has at most one in flight and it mostly waits on its container, so this caps the sessions a host
   * serves without queueing; the SDK's 100 would queue the 101st. Env `KEEL_MAX_SANDBOX_ACTIVITIES`. @default 500
   */
  maxSandboxActivities: number;
  /**
   * Sessions the session worker keeps in memory between tasks (sticky execution; an evicted one replays its
   * history on its next task). Env `KEEL_MAX_CACHED_WORKFLOWS`. @default the SDK's, sized from the heap limit
   */
  maxCachedWorkflows?: number;
  /** Address `keel serve` listens on. Env `KEEL_API_HOST`. @default '127.0.0.1' (this machine only) */
  apiHost: string;
  /** Port `keel serve` listens on. Env `KEEL_API_PORT`. @default 8080 */
  apiPort: number;
  /**
   * Port for a `keel worker`'s Prometheus endpoint (`GET /metrics`), on all interfaces.
   * Env `KEEL_METRICS_PORT`. @default unset (no endpoint; `keel serve` always has `/metrics`)
   */
  metricsPort?: number;
  /**
   * OTLP/HTTP URL spans are posted to. Env `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is), else
   * `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
   * turn it off. @default unset (no tracing)
   */
  tracesUrl?: string;
  /** `service.name` on spans. Env `OTEL_SERVICE_NAME`. @default 'keel-worker' or 'keel-serve' */
  serviceName?: string;
  /**
   * How `keel worker` and `keel serve` log: `json` (pino, one object a line, `sessionId` on every
   * line about a session) or `text`. Env `KEEL_LOG_FORMAT`. @default 'json' for both
   */
  logFormat: 'json' | 'text';
  /** The raw environment, for model credentials (resolved by `resolveModelConfig`). */
  env: Record<string, string | undefined>;
}

const ROLES = ['all', 'session', 'sandbox'] as const;

export function loadConfig(env: Record<string, string | undefined> = process.env, projectDir = keelRoot()): KeelConfig {
  const role = env.KEEL_WORKER_ROLE ?? 'all';
  if (!(ROLES as readonly string[]).includes(role)) {
    throw new Error(`KEEL_WORKER_ROLE must be one of ${ROLES.join(', ')}, not "${role}"`);
  }
  const temporal = resolveConnectionOptions({}, env);
  const stateDir = env.KEEL_STATE_DIR || join(projectDir, '.keel');
  return {
    temporalAddress: temporal.address,
    temporalNamespace: temporal.namespace,
    temporalUi: env.KEEL_TEMPORAL_UI || 'http://localhost:8233',
    databaseUrl: env.DATABASE_URL || 'postgres://keel:keel@localhost:5432/keel',
    databaseOwnerUrl: env.KEEL_DATABASE_OWNER_URL || env.DATABASE_URL || 'postgres://keel:keel@localhost:5432/keel',
    dockerHost: env.DOCKER_HOST || undefined,
    hostId: env.KEEL_HOST_ID || hostname(),
    sandboxImage: env.KEEL_SANDBOX_IMAGE || undefined,
    workerRole: role as KeelConfig['workerRole'],
    temporalCli: env.TEMPORAL_CLI || undefined,
    stateDir,
    devServerArgs: (env.KEEL_DEV_SERVER_ARGS ?? '').split(/\s+/).filter(Boolean),
    blobDir: env.KEEL_BLOB_DIR || join(stateDir, 'blobs'),
    ...(env.KEEL_BLOB_S3_BUCKET ? { blobS3: s3Options(env, env.KEEL_BLOB_S3_BUCKET) } : {}),
    poolSize: numberFrom(env.KEEL_POOL_SIZE, 0, 'KEEL_POOL_SIZE', 0),
    reapIntervalSec: numberFrom(env.KEEL_REAP_INTERVAL_SEC, 60, 'KEEL_REAP_INTERVAL_SEC', 0, true),
    gcIntervalSec: numberFrom(env.KEEL_GC_INTERVAL_SEC, 21_600, 'KEEL_GC_INTERVAL_SEC', 0, true),
    retentionDays: numberFrom(env.KEEL_RETENTION_DAYS, 30, 'KEEL_RETENTION_DAYS', 0, true),
    gcGraceSec: numberFrom(env.KEEL_GC_GRACE_SEC, 86_400, 'KEEL_GC_GRACE_SEC', 0, true),
    maxWorkflowTasks: numberFrom(env.KEEL_MAX_WORKFLOW_TASKS, 40, 'KEEL_MAX_WORKFLOW_TASKS', 2),
    maxLocalActivities: numberFrom(env.KEEL_MAX_LOCAL_ACTIVITIES, 100, 'KEEL_MAX_LOCAL_ACTIVITIES', 1),
    maxSandboxActivities: numberFrom(env.KEEL_MAX_SANDBOX_ACTIVITIES, 500, 'KEEL_MAX_SANDBOX_ACTIVITIES', 1),
    apiHost: env.KEEL_API_HOST || '127.0.0.1',
    apiPort: numberFrom(env.KEEL_API_PORT, 8080, 'KEEL_API_PORT', 0),
    maxCachedWorkflows: env.KEEL_MAX_CACHED_WORKFLOWS ? numberFrom(env.KEEL_MAX_CACHED_WORKFLOWS, 0, 'KEEL_MAX_CACHED_WORKFLOWS', 0) : undefined,
    ...(env.KEEL_METRICS_PORT ? { metricsPort: numberFrom(env.KEEL_METRICS_PORT, 0, 'KEEL_METRICS_PORT', 0) } : {}),
    ...tracesFrom(env),
    logFormat: logFormatFrom(env.KEEL_LOG_FORMAT),
    env,
  };
}

function tracesFrom(env: Record<string, string | undefined>): Pick<KeelConfig, 'tracesUrl' | 'serviceName'> {
  const serviceName = env.OTEL_SERVICE_NAME ? { serviceName: env.OTEL_SERVICE_NAME } : {};
  if (env.OTEL_SDK_DISABLED?.toLowerCase() === 'true' || env.OTEL_TRACES_EXPORTER === 'none') return serviceName;
  const url = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || (env.OTEL_EXPORTER_OTLP_ENDPOINT ? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, '')}/v1/traces` : undefined);
  if (!url) return serviceName;
  if (!/^https?:\/\/[^/]/.test(url)) throw new Error(`OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT must be an http(s) URL, not "${url}"`);
  return { tracesUrl: url, ...serviceName };
}

function logFormatFrom(value: string | undefined): KeelConfig['logFormat'] {
  if (value === undefined || value === '') return 'json';
  if (value !== 'json' && value !== 'text') throw new Error(`KEEL_LOG_FORMAT must be json or text, not "${value}"`);
  return value;
}

function s3Options(env: Record<string, string | undefined>, bucket: string): S3BlobStoreOptions {
  return {
    bucket,
    ...(env.KEEL_BLOB_S3_PREFIX !== undefined ? { prefix: env.KEEL_BLOB_S3_PREFIX } : {}),
    ...(env.KEEL_BLOB_S3_ENDPOINT ? { endpoint: env.KEEL_BLOB_S3_ENDPOINT } : {}),
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    ...(env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
      ? {
          credentials: {
            accessKeyId: env.AWS_ACCESS_KEY_ID,
            secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
            ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
          },
        }
      : {}),
  };
}

/** A number from the environment: `fallback` when unset, else at least `min` (and whole, unless `fraction`). */
function numberFrom(value: string | undefined, fallback: number, name: string, min: number, fraction = false): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || (!fraction && !Number.isInteger(n))) {
    throw new Error(`${name} must be ${fraction ? 'a number' : 'an integer'} >= ${min}, not "${value}"`);
  }
  return n;
}
