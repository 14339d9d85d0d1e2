/**
 * Builds Keel's workers from config. One process can run every role (local use)
 * or one role each (production): a session worker (workflows, model and store
 * activities) and a sandbox-host worker per Docker host.
 */
import { Client } from '@temporalio/client';
import { createHash, randomUUID } from 'node:crypto';
import { bundleWorkflowCode, Worker, type NativeConnection, type WorkerInterceptors } from '@temporalio/worker';
import type Docker from 'dockerode';
import { createEvalActivities } from '../activities/eval';
import { createModelActivities, resolveModelConfig } from '../activities/model';
import { createMcpActivities, McpPool, resolveMcpConfig } from '../activities/mcp';
import { createSandboxActivities, HEARTBEAT_THROTTLE_MS } from '../activities/sandbox';
import { createStoreActivities } from '../activities/store';
import { createWebhookActivities } from '../activities/webhooks';
import { connectTemporal } from '../client/connection';
import { hostQueueFor, SANDBOX_QUEUE, SESSION_QUEUE } from '../common/constants';
import { defaultImageTag } from '../host/image';
import { listManagedContainers } from '../host/inventory';
import { WarmPool } from '../host/pool';
import { describePools, planPools } from '../host/pool-images';
import { SandboxRuntime } from '../host/runtime';
import { countSessionsByStatus, type Sql } from '../store';
import type { Logger } from '../telemetry/log';
import type { KeelConfig } from './config';
import { archiveEnded } from '../audit/archive';
import { collectGarbage } from '../audit/gc';
import { reconcileLive } from '../inspect/reconcile';
import { every } from './periodic';
import { startReaper } from './reaper';
import { checkPoolImages, checkSandboxRuntime, connectDatabase, connectDocker, connectTemporalWorker, openBlobStore } from './services';
import { watchSandboxes, watchSessions } from '../telemetry/metrics';
import { startTracing } from '../telemetry/tracing';
import { serveMetrics, tracingSinks, withTracing, WORKFLOW_TRACING_MODULE } from '../telemetry/worker';

export interface KeelWorkers {
  /** Resolves when every worker has stopped. */
  run(): Promise<void>;
  /** Stop polling, finish in-flight tasks, close connections. */
  shutdown(): Promise<void>;
  /** The queue this process's sandbox-host worker owns, if it runs one. */
  hostQueue?: string;
  /** The port of this process's `/metrics` endpoint, when `KEEL_METRICS_PORT` is set. */
  metricsPort?: number;
}

/** The bundler's progress logs are noise in a worker's output; its errors are not. */
const noop = (): void => undefined;
const quietBundler = { trace: noop, debug: noop, info: noop, warn: noop, error: (msg: string) => console.error(msg), log: noop };

export interface WorkerOptions {
  role?: KeelConfig['workerRole'];
  /**
   * Pre-bundled workflow code (tests and benchmarks bundle once); with tracing on it must have been bundled
   * with `workflowInterceptorModules: [WORKFLOW_TRACING_MODULE]`. @default bundles `workflows/` at start
   */
  workflowBundle?: { code: string };
  /** Activity interceptors for the sandbox-host workers (tests use one to inject faults). @default none */
  sandboxInterceptors?: WorkerInterceptors;
  /** Interceptors for the session worker (tests use one to inject faults). @default none */
  sessionInterceptors?: WorkerInterceptors;
  /** Where the periodic jobs (reconciler, blob GC, reaper) report. @default plain lines on stderr */
  log?: Logger;
}

/** `(message, fields)` to `logger` at info, or a plain line on stderr. */
function lineLogger(logger: Logger | undefined): (msg: string, fields?: Record<string, unknown>) => void {
  return logger ? (msg, fields) => logger.info(fields ?? {}, msg) : (msg) => console.error(msg);
}

export async function createWorkers(config: KeelConfig, opts: WorkerOptions = {}): Promise<KeelWorkers> {
  const role = opts.role ?? config.workerRole;
  // A sandbox host's checks come first: a runtime dockerd lacks or a pool image that cannot serve stops the
  // worker before it connects to anything else.
  let docker: Docker | undefined;
  const defaultImage = config.sandboxImage ?? defaultImageTag();
  const pools = planPools(defaultImage, config.poolSize, config.poolImages);
  if (role === 'all' || role === 'sandbox') {
    docker = await connectDocker(config);
    await checkSandboxRuntime(docker, config.sandboxRuntime);
    await checkPoolImages(docker, pools.filter((p) => p.named).map((p) => p.image));
  }
  const connection: NativeConnection = await connectTemporalWorker(config);
  const workers: Worker[] = [];
  let sql: Sql | undefined;
  let runtime: SandboxRuntime | undefined;
  let hostQueue: string | undefined;
  const stops: Array<() => Promise<void> | void> = [];
  // Shutdown lets running tasks finish for the grace period, cancels them, then gives up after a few more seconds.
  const base = {
    connection,
    namespace: config.temporalNamespace,
    shutdownGraceTime: config.shutdownGraceSec * 1000,
    shutdownForceTime: config.shutdownGraceSec * 1000 + 5_000,
  };
  // Session workers read stored outputs and transcripts; sandbox hosts write them and snapshots: one store.
  const store = openBlobStore(config);
  stops.push(store.close);

  // The build id names the exact workflow code a session worker runs (short: it is in every workflow task's history).
  const tracing = config.tracesUrl ? startTracing({ url: config.tracesUrl, serviceName: config.serviceName ?? 'keel-worker' }) : undefined;
  const bundle =
    role === 'sandbox'
      ? undefined
      : (opts.workflowBundle ??
        (await bundleWorkflowCode({
          workflowsPath: require.resolve('../workflows'),
          logger: quietBundler,
          ...(tracing ? { workflowInterceptorModules: [WORKFLOW_TRACING_MODULE] } : {}),
        })));
  const sinks = tracingSinks(tracing);
  const buildId = bundle ? `keel-${createHash('sha256').update(bundle.code).digest('hex').slice(0, 12)}` : 'keel-sandbox-host';
  // Workers announce their Worker Deployment Version (Temporal's successor to the deprecated `buildId` option) but
  // do not opt into versioned routing: sessions outlive deployments, so pinning would keep old workers for as long
  // as any session lives, and auto-upgrade needs replay-safe changes anyway: those are `patched()` (README).
  const workerDeploymentOptions = { version: { deploymentName: config.deploymentName, buildId }, useWorkerVersioning: false } as const;

  if (role === 'all' || role === 'session') {
    sql = await connectDatabase(config);
    const db = sql;
    watchSessions(() => countSessionsByStatus(db));
    // The operator's MCP servers (KEEL_MCP_CONFIG): started on a session's first use, stopped with the worker.
    const mcpPool = new McpPool(resolveMcpConfig(config.env));
    stops.push(() => mcpPool.close());
    const activities = {
      ...createModelActivities({ config: resolveModelConfig(config.env), sql, blobs: store.blobs }),
      ...createStoreActivities({ sql }),
      ...createWebhookActivities({ secret: config.webhookSecret }),
      ...createEvalActivities({ sql }),
      ...createMcpActivities({ pool: mcpPool, blobs: store.blobs }),
    };
    workers.push(
      await Worker.create({
        ...base,
        taskQueue: SESSION_QUEUE,
        workflowBundle: bundle,
        workerDeploymentOptions,
        activities,
        interceptors: withTracing(opts.sessionInterceptors, tracing),
        ...(sinks ? { sinks } : {}),
        maxConcurrentWorkflowTaskExecutions: config.maxWorkflowTasks,
        stickyQueueScheduleToStartTimeout: config.stickyTimeoutMs,
        maxConcurrentLocalActivityExecutions: config.maxLocalActivities,
        ...(config.maxCachedWorkflows !== undefined ? { maxCachedWorkflows: config.maxCachedWorkflows } : {}),
      }),
    );
    if (config.reapIntervalSec > 0) {
      // Sessions Temporal ended outside Keel's code (terminated, timed out) get their session.ended here.
      const clientConnection = await connectTemporal(config.temporalAddress);
      const client = new Client({ connection: clientConnection, namespace: config.temporalNamespace });
      const db = sql;
      const log = lineLogger(opts.log);
      stops.push(every(config.reapIntervalSec, 'reconciler', async () => {
        for (const id of await reconcileLive(db, client)) log(`reconciler: session ${id} ended outside Keel; recorded`, { sessionId: id });
        // Before Temporal's retention deletes them: ended sessions' histories go to the blob store.
        await archiveEnded(db, client, store.blobs);
      }, log));
      stops.push(() => clientConnection.close());
    }
    if (config.gcIntervalSec > 0) {
      const db = sql;
      const log = lineLogger(opts.log);
      stops.push(every(config.gcIntervalSec, 'blob gc', async () => {
        const r = await collectGarbage(db, store.blobs, { retentionDays: config.retentionDays, graceSec: config.gcGraceSec });
        if (r.removed > 0) log(`blob gc: removed ${r.removed} blobs (${r.removedBytes} bytes) no retained session references`);
      }, log));
    }
  }

  if (docker) {
    const dockerd = docker;
    hostQueue = hostQueueFor(config.hostId);
    const sandboxes = new SandboxRuntime(dockerd);
    runtime = sandboxes;
    watchSandboxes(async () =>
      (await listManagedContainers(dockerd)).filter((c) => c.hostId === config.hostId).map((c) => ({ state: c.state, kind: c.sessionId ? 'session' : 'pool' })),
    );
    // Each pool registers with the runtime, which removes its idle containers at shutdown.
    const warm = pools.map(
      (p) => new WarmPool(sandboxes, { hostId: config.hostId, image: p.image, runtime: config.sandboxRuntime, size: p.size, ...(config.diskDir ? { diskDir: config.diskDir } : {}) }),
    );
    if (pools.length) lineLogger(opts.log)(`sandbox host ${config.hostId}: warm pools: ${describePools(pools, defaultImage)}`, { pools });
    const activities = createSandboxActivities({
      runtime,
      blobs: store.blobs,
      config: { hostId: config.hostId, hostQueue, defaultImage, defaultRuntime: config.sandboxRuntime, diskDir: config.diskDir, egress: config.egress },
      pools: warm,
      ...(role === 'all' ? { sessionWorker: `${config.hostId}/${process.pid}/${randomUUID()}` } : {}),
    });
    // The shared queue takes provisioning; the host's own queue takes everything after (host affinity).
    for (const taskQueue of [SANDBOX_QUEUE, hostQueue]) {
      workers.push(
        await Worker.create({
          ...base,
          taskQueue,
          activities,
          workerDeploymentOptions,
          interceptors: withTracing(opts.sandboxInterceptors, tracing),
          maxConcurrentActivityTaskExecutions: config.maxSandboxActivities,
          // The SDK would hold beats back for 0.8 of the heartbeat timeout; a 2 s timeout needs them sooner.
          maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE_MS,
        }),
      );
    }
    if (config.reapIntervalSec > 0) {
      const clientConnection = await connectTemporal(config.temporalAddress);
      const client = new Client({ connection: clientConnection, namespace: config.temporalNamespace });
      const log = lineLogger(opts.log);
      stops.push(startReaper({ docker, client, hostId: config.hostId, ...(config.diskDir ? { diskDir: config.diskDir } : {}), intervalSec: config.reapIntervalSec, log }));
      stops.push(() => clientConnection.close());
    }
  }

  const metrics = config.metricsPort !== undefined ? await serveMetrics(config.metricsPort) : undefined;
  if (metrics) stops.push(metrics.close);
  if (tracing) stops.push(tracing.shutdown);

  let closed: Promise<void> | undefined;
  const close = () =>
    (closed ??= (async () => {
      for (const stop of stops) await stop();
      await runtime?.close();
      await sql?.end({ timeout: 5 });
      await connection.close();
    })());

  return {
    hostQueue,
    ...(metrics ? { metricsPort: metrics.port } : {}),
    async run() {
      try {
        await Promise.all(workers.map((w) => w.run()));
      } finally {
        await close();
      }
    },
    async shutdown() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    },
  };
}
