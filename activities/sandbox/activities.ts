/**
 * The sandbox activities: provision (or restore) a session's container, run
 * tool calls in it, snapshot it, destroy it. They run on the sandbox-host
 * worker of the Docker host that holds the container (the handle's `hostQueue`).
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type Docker from 'dockerode';
import { BlobStoreConfigError, BlobStoreUnavailableError } from '../blobs';
import { sandboxSpecProblems } from '../../common/sandbox-spec';
import { validateToolCall, WORKFLOW_TOOLS } from '../../common/tools';
import type { SandboxHandle, SandboxSpec, SnapshotInfo, ToolCall, ToolResult } from '../../common/types';
import { DirBlobStore, type BlobStore } from '../blobs';
import { blobDirOf, resolveSandboxConfig, SPEC_DEFAULTS, type SandboxConfig } from './config';
import { containerName, createOptions, ensureVolume, ownerOf, removeSession, sessionContainers, type ManagedContainer } from './containers';
import { classifyDockerError, containerGone, imageMissing, SandboxFailure, snapshotMissing, statusOf } from './errors';
import { ExecutorGoneError, ExecutorTimeoutError, type ExecutorClient } from './executor-client';
import { imageExists } from './image';
import { NameTakenError, WarmPool } from './pool';
import { SandboxRuntime } from './runtime';
import { restoreSnapshot, SnapshotMissingError, takeSnapshot } from './snapshots';
import { toExecutorOp, toToolResult } from './tool-ops';

const HEARTBEAT_MS = 2000;
const READY_TIMEOUT_MS = 30_000;

export interface SandboxActivityDeps {
  /** Holds the Docker client and the attach streams; pass one to be able to `close()` it at shutdown. */
  runtime?: SandboxRuntime;
  /** Used to make a runtime when none is given. */
  docker?: Docker;
  /** Resolved with {@link resolveSandboxConfig}; unset fields take their defaults. */
  config?: Partial<SandboxConfig>;
  /** Where snapshots go. @default a {@link DirBlobStore} in `config.blobDir` */
  blobs?: BlobStore;
}

/** The current activity context, or undefined when called outside an activity (tests, scripts). */
function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/** Heartbeat every {@link HEARTBEAT_MS} until the returned function is called. */
function keepBeating(ctx: Context | undefined, details?: unknown): () => void {
  if (!ctx) return () => undefined;
  // No beat at the start: most calls finish long before the first interval, and each
  // beat is a round trip through the server (measured: ~3.5 ms of server CPU per call).
  const timer = setInterval(() => ctx.heartbeat(details), HEARTBEAT_MS);
  return () => clearInterval(timer);
}

/**
 * Build the sandbox activities. Give either a `runtime` (preferred: the worker
 * closes it at shutdown) or a `docker` client.
 */
export function createSandboxActivities(deps: SandboxActivityDeps) {
  if (!deps.runtime && !deps.docker) throw new Error('createSandboxActivities needs a runtime or a docker client');
  const runtime: SandboxRuntime = deps.runtime ?? new SandboxRuntime(deps.docker as Docker);
  const { docker } = runtime;
  const config = resolveSandboxConfig(deps.config);
  const blobs: BlobStore = deps.blobs ?? new DirBlobStore(blobDirOf(config));
  const pool =
    config.poolSize > 0
      ? runtime.adoptPool(() => new WarmPool(runtime, { hostId: config.hostId, image: config.defaultImage, size: config.poolSize }))
      : undefined;

  /** The pool serves sessions whose spec is the pool's: default image and limits. */
  const poolFits = (spec: SandboxSpec | undefined): boolean =>
    pool !== undefined &&
    (spec?.image ?? config.defaultImage) === pool.options.image &&
    (spec?.memoryMb ?? SPEC_DEFAULTS.memoryMb) === SPEC_DEFAULTS.memoryMb &&
    (spec?.cpus ?? SPEC_DEFAULTS.cpus) === SPEC_DEFAULTS.cpus &&
    (spec?.pidsLimit ?? SPEC_DEFAULTS.pidsLimit) === SPEC_DEFAULTS.pidsLimit;

  const handleFor = (containerId: string, image: string, generation: number, restoredFrom?: string): SandboxHandle => ({
    containerId,
    generation,
    ...(restoredFrom ? { restoredFrom } : {}),
    hostQueue: config.hostQueue,
    hostId: config.hostId,
    image,
  });

  /** Waits for the executor; returns its ping answer (which names the snapshot it was restored from). */
  async function waitReady(client: ExecutorClient): Promise<Record<string, unknown>> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      try {
        const r = await client.request('ping', {}, { timeoutMs: 2000 });
        if (r.ok) return r.result;
      } catch (err) {
        if (!(err instanceof ExecutorTimeoutError)) throw err;
      }
      if (Date.now() > deadline) throw new Error(`executor in ${client.containerId.slice(0, 12)} did not answer ping within ${READY_TIMEOUT_MS} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function startAndAttach(containerId: string): Promise<Record<string, unknown>> {
    const client = runtime.client(containerId);
    // Attach before start so nothing the executor says is missed.
    await client.connect({ requireRunning: false });
    try {
      await docker.getContainer(containerId).start();
    } catch (err) {
      if (statusOf(err) !== 304) throw err; // 304: already started by a concurrent attempt
    }
    return waitReady(client);
  }

  /** The container of one generation if it exists, started and answering; finishes a claim a crashed attempt began. */
  async function existing(sessionId: string, generation: number) {
    const mine: ManagedContainer[] = (await sessionContainers(docker, sessionId)).filter((c) => c.generation === generation);
    const c = mine.find((m) => m.state === 'running') ?? mine[0];
    if (!c) return undefined;
    const ping = c.state === 'running' ? await waitReady(runtime.client(c.id)) : await startAndAttach(c.id);
    if (c.poolVolume !== undefined) {
      const client = runtime.client(c.id);
      const r = await client.request('claim', { session: sessionId, generation }, { timeoutMs: 5000 });
      if (!r.ok) throw new Error(`pool container ${c.id.slice(0, 12)} refused the claim: ${r.error.message}`);
      const name = containerName(sessionId, generation);
      if (c.name !== name) await docker.getContainer(c.id).rename({ name });
    }
    return { id: c.id, image: c.image, ping };
  }

  /** Bring up (or find) the container of one generation; returns its id, image and ping answer. */
  async function upContainer(sessionId: string, generation: number, spec: SandboxSpec | undefined) {
    const image = spec?.image ?? config.defaultImage;
    const found = await existing(sessionId, generation);
    if (found) return found;
    if (pool && poolFits(spec)) {
      try {
        const claimed = await pool.claim(sessionId, generation);
        if (claimed) return { id: claimed.id, image, ping: claimed.ping };
      } catch (err) {
        if (!(err instanceof NameTakenError)) throw err;
        const now = await existing(sessionId, generation);
        if (now) return now;
      }
    }

    if (!(await imageExists(docker, image))) throw imageMissing(image);
    await ensureVolume(docker, sessionId, config.hostId, generation);
    const options = createOptions({ sessionId, hostId: config.hostId, image, spec, generation });
    let id: string;
    try {
      id = (await docker.createContainer(options)).id;
    } catch (err) {
      if (statusOf(err) === 404) throw imageMissing(image);
      if (statusOf(err) !== 409 || !options.name) throw err;
      // Name taken: normally a concurrent attempt of this same activity created (or claimed) it.
      const info = await docker.getContainer(options.name).inspect();
      const owner = await ownerOf(docker, info);
      if (owner.sessionId !== sessionId || owner.generation !== generation) {
        throw ApplicationFailure.nonRetryable(
          `container name ${options.name} belongs to session ${owner.sessionId} generation ${owner.generation}`,
          SandboxFailure.NameConflict,
        );
      }
      id = info.Id;
    }
    return { id, image, ping: await startAndAttach(id) };
  }

  /** Classify a failure of a call into a known container. */
  function classify(err: unknown, containerId: string, key?: string): unknown {
    if (err instanceof ApplicationFailure || err instanceof CancelledFailure) return err;
    if (err instanceof ExecutorGoneError) return containerGone(containerId, err.detail);
    if (err instanceof SnapshotMissingError) return snapshotMissing(err.id);
    if (err instanceof BlobStoreConfigError) return ApplicationFailure.nonRetryable(err.message, SandboxFailure.BlobStoreMisconfigured);
    if (err instanceof BlobStoreUnavailableError) return ApplicationFailure.retryable(err.message, SandboxFailure.BlobStoreUnavailable);
    if (err instanceof ExecutorTimeoutError) {
      return ApplicationFailure.retryable(`${err.message}${key ? `; the retry reuses key ${key}` : ''}`, SandboxFailure.ExecutorTimeout);
    }
    return classifyDockerError(err);
  }

  return {
    /**
     * Give the session a running container of generation `generation` (default 1),
     * restored from snapshot `restoreFrom` when given. Idempotent per (session, generation):
     * a retry finds the container a previous attempt created, and restores only if that
     * attempt did not finish restoring.
     */
    async provisionSandbox({
      sessionId,
      spec,
      generation = 1,
      restoreFrom,
    }: {
      sessionId: string;
      spec?: SandboxSpec;
      generation?: number;
      restoreFrom?: string;
    }): Promise<SandboxHandle> {
      if (!Number.isInteger(generation) || generation < 1) {
        throw ApplicationFailure.nonRetryable(`generation must be an integer >= 1, not ${generation}`, 'Sandbox.BadRequest');
      }
      // A spec that reached us without the client's check (another client, an old session) must not lift a limit.
      const problems = sandboxSpecProblems(spec);
      if (problems.length) throw ApplicationFailure.nonRetryable(problems.join('; '), 'Sandbox.BadRequest');
      const ctx = activityContext();
      const stop = keepBeating(ctx);
      let containerId = '';
      try {
        const up = await upContainer(sessionId, generation, spec);
        containerId = up.id;
        if (restoreFrom && up.ping.restoredFrom !== restoreFrom) {
          await restoreSnapshot(runtime.client(up.id), blobs, restoreFrom);
        }
        return handleFor(up.id, up.image, generation, restoreFrom);
      } catch (err) {
        if (err instanceof ExecutorGoneError) throw containerGone(err.containerId, `${err.detail} while starting; see \`docker logs\``);
        throw classify(err, containerId);
      } finally {
        stop();
      }
    },

    /**
     * Run one tool call in the session's sandbox. Tool failures (non-zero exit,
     * timeout, missing file, ...) come back as `ok: false` results for the model;
     * only infrastructure failures throw. With `snapshot`, the sandbox is snapshotted
     * afterwards (also when the call was answered from the journal by a retry) and
     * `result.snapshot` is set when its files differ from `snapshot.parent`.
     */
    async runTool({
      sessionId,
      handle,
      call,
      snapshot,
    }: {
      sessionId: string;
      handle: SandboxHandle;
      call: ToolCall;
      snapshot?: { parent?: string };
    }): Promise<ToolResult> {
      const valid = validateToolCall(call.name, call.input);
      if (!valid.ok) return { callId: call.id, name: call.name, ok: false, error: valid.error, output: valid.message };
      if (WORKFLOW_TOOLS.has(valid.name)) {
        return { callId: call.id, name: call.name, ok: false, error: 'UnknownTool', output: `${call.name} is carried out by the session, not the sandbox` };
      }

      const ctx = activityContext();
      const wf = ctx?.info.workflowExecution;
      // Stable across retries of this activity, so a retry never runs the call twice.
      const key = ctx && wf ? `${wf.workflowId}/${ctx.info.activityId}` : `${sessionId}/${call.id}`;
      const op = toExecutorOp(valid.name, valid.input, config);
      const client = runtime.client(handle.containerId);
      const id = client.newRequestId();
      const started = Date.now();

      const stop = keepBeating(ctx, { requestId: id });
      const answer = client.request(op.op, op.args, { id, key, timeoutMs: op.timeoutMs });
      try {
        const response = ctx ? await Promise.race([answer, ctx.cancelled]) : await answer;
        const result = toToolResult(call, valid.name, response, config.outputLimit, Date.now() - started);
        if (snapshot) {
          const { info } = await takeSnapshot(client, blobs, snapshot.parent);
          if (info) result.snapshot = info;
        }
        return result;
      } catch (err) {
        if (err instanceof CancelledFailure) {
          answer.catch(() => undefined);
          await client.cancel(id).catch(() => false);
          throw err;
        }
        throw classify(err, handle.containerId, key);
      } finally {
        stop();
      }
    },

    /** Snapshot the sandbox now, compared with `parent`; null when nothing changed since it. */
    async snapshotSandbox({ handle, parent }: { sessionId: string; handle: SandboxHandle; parent?: string }): Promise<SnapshotInfo | null> {
      const stop = keepBeating(activityContext());
      try {
        return (await takeSnapshot(runtime.client(handle.containerId), blobs, parent)).info;
      } catch (err) {
        throw classify(err, handle.containerId);
      } finally {
        stop();
      }
    },

    /**
     * Remove the session's containers and workspace volumes, all generations or only those
     * below `belowGeneration`. Idempotent. Snapshots stay in the blob store.
     */
    async destroySandbox({ sessionId, belowGeneration }: { sessionId: string; belowGeneration?: number }): Promise<{ removed: boolean }> {
      // Removing a container can take a while on a loaded host: keep the heartbeat timeout at bay.
      const stop = keepBeating(activityContext());
      try {
        const removed = await removeSession(docker, sessionId, (id) => runtime.forget(id), belowGeneration);
        return { removed };
      } catch (err) {
        throw classifyDockerError(err);
      } finally {
        stop();
      }
    },
  };
}

export type SandboxActivities = ReturnType<typeof createSandboxActivities>;
