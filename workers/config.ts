/**
 * The one place Keel reads its environment. Every option, its variable and its default.
 * Activities never read process.env: workers build them from this config.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { isAbsolute, join } from 'node:path';
import type { S3BlobStoreOptions } from '../blobs';
import { resolveConnectionOptions } from '../client/connection';
import { DEFAULT_SANDBOX_RUNTIME } from '../common/defaults';
import { sandboxSpecProblems } from '../common/sandbox-spec';
import { DEFAULT_DISK_DIR } from '../host/disks';
import type { EgressSettings } from '../host/egress';
import { keelRoot } from '../host/paths';
import { imageKey, imageNameProblem, type PoolImage } from '../host/pool-images';

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
  /**
   * Docker runtime for sessions whose `SandboxSpec` names none: `runc`, or `runsc` (gVisor) once dockerd registered it
   * (`KEEL_GVISOR=1 npm run setup`). A sandbox-host worker refuses to start when dockerd does not know it.
   * Env `KEEL_SANDBOX_RUNTIME`. @default 'runc'
   */
  sandboxRuntime: string;
  /**
   * Where a sandbox-host worker makes each sandbox's /workspace filesystem (an ext4 image of `SandboxSpec.diskMb`,
   * default 2048 MiB, loop-mounted; needs root on the Docker host). Env `KEEL_DISK_DIR`; `KEEL_DISK_QUOTA=off` makes
   * /workspace a plain Docker volume with no quota (null here). @default '/var/lib/keel/disks'
   */
  diskDir: string | null;
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
   * Images besides the default that a sandbox-host worker keeps warm, one pool each: `image` (a pool of
   * `poolSize`) or `image=N` (a pool of N), separated by commas, e.g. `my-tools:1=2,keel-custom:ab12cd34ef56`.
   * Each is checked against the sandbox contract at worker start; one that is missing or fails stops the worker.
   * Naming the default image sets its pool's size. Env `KEEL_POOL_IMAGES`. @default none
   */
  poolImages: PoolImage[];
  /**
   * How often a sandbox-host worker removes containers of ended sessions, and a session worker reconciles
   * live sessions with Temporal; 0 turns both off. Env `KEEL_REAP_INTERVAL_SEC`. @default 60
   */
  reapIntervalSec: number;
  /** How often a session worker collects blob garbage; 0 turns it off. Env `KEEL_GC_INTERVAL_SEC`. @default 21600 (6 hours) */
  gcIntervalSec: number;
  /**
   * The HMAC key session workers sign webhook POSTs with (common/webhooks.ts). A secret: never in a
   * spec, an event or a history. Env `KEEL_WEBHOOK_SECRET`. @default none (deliveries fail NotConfigured)
   */
  webhookSecret?: string;
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
   * How long a session's next workflow task waits for the worker that ran its last one (its sticky
   * queue) before any session worker takes it, replaying the history (`stickyQueueScheduleToStartTimeout`).
   * A worker killed with SIGKILL costs every session it held this long per step. Lower recovers sooner;
   * a worker too busy to start a task this soon pays a replay for it.
   * Env `KEEL_STICKY_TIMEOUT_MS`. @default 1000 (the SDK's is 10 s)
   */
  stickyTimeoutMs: number;
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
  /**
   * What a sandbox host's egress proxies add for networked sessions (never part of a session's spec).
   * Env `KEEL_EGRESS_HEADERS`: JSON `{"api.example.com": {"Authorization": "Bearer …"}}`, headers the proxy
   * adds to plain-HTTP requests for that host (the sandbox never sees them), sent upstream over TLS. Env
   * `KEEL_EGRESS_CA_FILE`: more CA certificates (PEM) the proxy trusts for that TLS. Env `KEEL_EGRESS_RESOLVE`
   * (tests only): `name=address,…`, names the proxy connects to at that address, even a private one.
   * @default none
   */
  egress: EgressSettings;
  /**
   * The Temporal Worker Deployment the workers announce, with the workflow bundle's hash as build id
   * (`temporal worker deployment describe --name keel`). Env `KEEL_DEPLOYMENT_NAME`. @default 'keel'
   */
  deploymentName: string;
  /**
   * On SIGTERM a worker stops polling and gives running tool calls this long to finish before it cancels them and
   * exits; a second SIGTERM exits at once. Keep it under the orchestrator's kill timeout (Kubernetes: 30 s by
   * default, `terminationGracePeriodSeconds`). Env `KEEL_SHUTDOWN_GRACE_SEC`. @default 25
   */
  shutdownGraceSec: number;
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
  const poolSize = numberFrom(env.KEEL_POOL_SIZE, 0, 'KEEL_POOL_SIZE', 0);
  return {
    temporalAddress: temporal.address,
    temporalNamespace: temporal.namespace,
    temporalUi: env.KEEL_TEMPORAL_UI || 'http://localhost:8233',
    databaseUrl: env.DATABASE_URL || 'postgres://keel:keel@localhost:5432/keel',
    databaseOwnerUrl: env.KEEL_DATABASE_OWNER_URL || env.DATABASE_URL || 'postgres://keel:keel@localhost:5432/keel',
    dockerHost: env.DOCKER_HOST || undefined,
    hostId: env.KEEL_HOST_ID || hostname(),
    sandboxImage: env.KEEL_SANDBOX_IMAGE || undefined,
    sandboxRuntime: runtimeFrom(env.KEEL_SANDBOX_RUNTIME),
    diskDir: diskDirFrom(env),
    workerRole: role as KeelConfig['workerRole'],
    temporalCli: env.TEMPORAL_CLI || undefined,
    stateDir,
    devServerArgs: (env.KEEL_DEV_SERVER_ARGS ?? '').split(/\s+/).filter(Boolean),
    blobDir: env.KEEL_BLOB_DIR || join(stateDir, 'blobs'),
    ...(env.KEEL_BLOB_S3_BUCKET ? { blobS3: s3Options(env, env.KEEL_BLOB_S3_BUCKET) } : {}),
    poolSize,
    poolImages: poolImagesFrom(env.KEEL_POOL_IMAGES, poolSize),
    reapIntervalSec: numberFrom(env.KEEL_REAP_INTERVAL_SEC, 60, 'KEEL_REAP_INTERVAL_SEC', 0, true),
    gcIntervalSec: numberFrom(env.KEEL_GC_INTERVAL_SEC, 21_600, 'KEEL_GC_INTERVAL_SEC', 0, true),
    ...(env.KEEL_WEBHOOK_SECRET ? { webhookSecret: env.KEEL_WEBHOOK_SECRET } : {}),
    retentionDays: numberFrom(env.KEEL_RETENTION_DAYS, 30, 'KEEL_RETENTION_DAYS', 0, true),
    gcGraceSec: numberFrom(env.KEEL_GC_GRACE_SEC, 86_400, 'KEEL_GC_GRACE_SEC', 0, true),
    maxWorkflowTasks: numberFrom(env.KEEL_MAX_WORKFLOW_TASKS, 40, 'KEEL_MAX_WORKFLOW_TASKS', 2),
    stickyTimeoutMs: numberFrom(env.KEEL_STICKY_TIMEOUT_MS, 1000, 'KEEL_STICKY_TIMEOUT_MS', 100),
    maxLocalActivities: numberFrom(env.KEEL_MAX_LOCAL_ACTIVITIES, 100, 'KEEL_MAX_LOCAL_ACTIVITIES', 1),
    maxSandboxActivities: numberFrom(env.KEEL_MAX_SANDBOX_ACTIVITIES, 500, 'KEEL_MAX_SANDBOX_ACTIVITIES', 1),
    deploymentName: env.KEEL_DEPLOYMENT_NAME || 'keel',
    shutdownGraceSec: numberFrom(env.KEEL_SHUTDOWN_GRACE_SEC, 25, 'KEEL_SHUTDOWN_GRACE_SEC', 0, true),
    apiHost: env.KEEL_API_HOST || '127.0.0.1',
    apiPort: numberFrom(env.KEEL_API_PORT, 8080, 'KEEL_API_PORT', 0),
    maxCachedWorkflows: env.KEEL_MAX_CACHED_WORKFLOWS ? numberFrom(env.KEEL_MAX_CACHED_WORKFLOWS, 0, 'KEEL_MAX_CACHED_WORKFLOWS', 0) : undefined,
    egress: {
      headers: egressHeaders(env.KEEL_EGRESS_HEADERS),
      resolve: egressResolve(env.KEEL_EGRESS_RESOLVE),
      ...(env.KEEL_EGRESS_CA_FILE ? { ca: caFile(env.KEEL_EGRESS_CA_FILE) } : {}),
    },
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

function diskDirFrom(env: Record<string, string | undefined>): string | null {
  const quota = env.KEEL_DISK_QUOTA || 'on';
  if (quota !== 'on' && quota !== 'off') throw new Error(`KEEL_DISK_QUOTA must be on or off, not "${quota}"`);
  if (quota === 'off') return null;
  const dir = env.KEEL_DISK_DIR || DEFAULT_DISK_DIR;
  if (!isAbsolute(dir)) throw new Error(`KEEL_DISK_DIR must be an absolute path, not "${dir}"`);
  return dir;
}

function runtimeFrom(value: string | undefined): string {
  if (!value) return DEFAULT_SANDBOX_RUNTIME;
  const problems = sandboxSpecProblems({ runtime: value });
  if (problems.length) throw new Error(`KEEL_SANDBOX_RUNTIME: ${problems.join('; ')}`);
  return value;
}

const HOST_NAME = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** An HTTP header name (RFC 9110 token). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** `KEEL_EGRESS_HEADERS`. Errors name the host and header, never a value: values are credentials. */
function egressHeaders(value: string | undefined): EgressSettings['headers'] {
  if (!value) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new Error('KEEL_EGRESS_HEADERS must be JSON: {"api.example.com": {"Authorization": "…"}}');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new Error('KEEL_EGRESS_HEADERS must be a JSON object of host names to objects of headers');
  }
  const out: EgressSettings['headers'] = {};
  for (const [host, headers] of Object.entries(parsed)) {
    if (!HOST_NAME.test(host)) throw new Error(`KEEL_EGRESS_HEADERS: "${host}" is not a lower-case host name`);
    if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) {
      throw new Error(`KEEL_EGRESS_HEADERS: the headers for ${host} must be an object of header names to values`);
    }
    out[host] = {};
    for (const [name, v] of Object.entries(headers as Record<string, unknown>)) {
      // Latin-1 without control characters: anything else could end the header and start another.
      if (!HEADER_NAME.test(name) || typeof v !== 'string' || !/^[\x20-\x7e\x80-\xff\t]*$/.test(v)) {
        throw new Error(`KEEL_EGRESS_HEADERS: header "${name}" for ${host} must be a header name with a one-line text value`);
      }
      out[host][name] = v;
    }
  }
  return out;
}

/** `KEEL_EGRESS_CA_FILE`: the PEM text of the file. */
function caFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`KEEL_EGRESS_CA_FILE: cannot read ${path}: ${(err as Error).message}`);
  }
  if (!text.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`KEEL_EGRESS_CA_FILE: ${path} holds no PEM certificate`);
  return text;
}

/** `KEEL_EGRESS_RESOLVE`: `name=address,…`. */
function egressResolve(value: string | undefined): EgressSettings['resolve'] {
  const out: EgressSettings['resolve'] = {};
  for (const pair of (value ?? '').split(',').map((p) => p.trim()).filter(Boolean)) {
    const [name = '', address = ''] = pair.split('=', 2);
    if (!HOST_NAME.test(name) || !isIP(address)) {
      throw new Error(`KEEL_EGRESS_RESOLVE must be name=address pairs separated by commas, such as api.test=172.17.0.1, not "${pair}"`);
    }
    out[name] = address;
  }
  return out;
}

/** `KEEL_POOL_IMAGES`: `image` or `image=N`, separated by commas; an image without a size gets `poolSize`. */
function poolImagesFrom(value: string | undefined, poolSize: number): PoolImage[] {
  const out: PoolImage[] = [];
  for (const entry of (value ?? '').split(',').map((e) => e.trim()).filter(Boolean)) {
    const at = entry.indexOf('=');
    const image = (at < 0 ? entry : entry.slice(0, at)).trim();
    const sizeText = at < 0 ? undefined : entry.slice(at + 1).trim();
    const bad = imageNameProblem(image);
    if (bad) throw new Error(`KEEL_POOL_IMAGES: ${bad}; write image or image=N separated by commas, such as my-tools:1=2,keel-custom:ab12cd34ef56`);
    let size = poolSize;
    if (sizeText !== undefined) {
      size = Number(sizeText);
      if (!/^\d+$/.test(sizeText) || size < 1) throw new Error(`KEEL_POOL_IMAGES: the size of ${image} must be a whole number >= 1, not "${sizeText}" (leave an image out to pool none of it)`);
    } else if (size < 1) {
      throw new Error(`KEEL_POOL_IMAGES: ${image} has no size and KEEL_POOL_SIZE is 0; write ${image}=N, or set KEEL_POOL_SIZE`);
    }
    const twice = out.find((p) => imageKey(p.image) === imageKey(image));
    if (twice) throw new Error(`KEEL_POOL_IMAGES names ${image} twice${twice.image !== image ? ` (as ${twice.image})` : ''}; name each image once`);
    out.push({ image, size });
  }
  return out;
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
