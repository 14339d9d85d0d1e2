/**
 * The sandbox activities: provision a session's container, run tool calls in
 * it, destroy it. They run on the sandbox-host worker of the Docker host that
 * holds the container (the handle's `hostQueue`).
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type Docker from 'dockerode';
import { validateToolCall } from '../../common/tools';
import type { SandboxHandle, SandboxSpec, ToolCall, ToolResult } from '../../common/types';
import { resolveSandboxConfig, type SandboxConfig } from './config';
import { createOptions, ensureVolume, removeSession, sessionContainers, type ManagedContainer } from './containers';
import { classifyDockerError, containerGone, imageMissing, SandboxFailure, statusOf } from './errors';
import { ExecutorGoneError, ExecutorTimeoutError, type ExecutorClient } from './executor-client';
import { imageExists } from './image';
import { SandboxRuntime } from './runtime';
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
}

/** The current activity context, or undefined when called outside an activity (tests, scripts). */
function activityContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
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

  const handleFor = (containerId: string, image: string): SandboxHandle => ({
    containerId,
    hostQueue: config.hostQueue,
    hostId: config.hostId,
    image,
  });

  async function waitReady(client: ExecutorClient): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      try {
        const r = await client.request('ping', {}, { timeoutMs: 2000 });
        if (r.ok) return;
      } catch (err) {
        if (!(err instanceof ExecutorTimeoutError)) throw err;
      }
      if (Date.now() > deadline) throw new Error(`executor in ${client.containerId.slice(0, 12)} did not answer ping within ${READY_TIMEOUT_MS} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async function startAndAttach(containerId: string, image: string): Promise<SandboxHandle> {
    const client = runtime.client(containerId);
    // Attach before start so nothing the executor says is missed.
    await client.connect({ requireRunning: false });
    try {
      await docker.getContainer(containerId).start();
    } catch (err) {
      if (statusOf(err) !== 304) throw err; // 304: already started by a concurrent attempt
    }
    await waitReady(client);
    return handleFor(containerId, image);
  }

  return {
    /**
     * Give the session a running sandbox container. Idempotent: a retry finds the
     * container a previous attempt created (by label, or by its fixed name).
     */
    async provisionSandbox({ sessionId, spec }: { sessionId: string; spec?: SandboxSpec }): Promise<SandboxHandle> {
      const ctx = activityContext();
      ctx?.heartbeat();
      const image = spec?.image ?? config.defaultImage;
      try {
        const existing: ManagedContainer[] = await sessionContainers(docker, sessionId);
        const running = existing.find((c) => c.state === 'running');
        if (running) {
          await waitReady(runtime.client(running.id));
          return handleFor(running.id, running.image);
        }
        const stopped = existing[0];
        if (stopped) return await startAndAttach(stopped.id, stopped.image);

        if (!(await imageExists(docker, image))) throw imageMissing(image);
        await ensureVolume(docker, sessionId, config.hostId);
        const options = createOptions({ sessionId, hostId: config.hostId, image, spec });
        let containerId: string;
        try {
          containerId = (await docker.createContainer(options)).id;
        } catch (err) {
          if (statusOf(err) === 404) throw imageMissing(image);
          if (statusOf(err) !== 409 || !options.name) throw err;
          // Name taken: a concurrent attempt of this same activity created it.
          containerId = (await docker.getContainer(options.name).inspect()).Id;
        }
        return await startAndAttach(containerId, image);
      } catch (err) {
        if (err instanceof ApplicationFailure) throw err;
        if (err instanceof ExecutorGoneError) throw containerGone(err.containerId, `${err.detail} while starting; see \`docker logs\``);
        throw classifyDockerError(err);
      }
    },

    /**
     * Run one tool call in the session's sandbox. Tool failures (non-zero exit,
     * timeout, missing file, ...) come back as `ok: false` results for the model;
     * only infrastructure failures throw.
     */
    async runTool({ sessionId, handle, call }: { sessionId: string; handle: SandboxHandle; call: ToolCall }): Promise<ToolResult> {
      const valid = validateToolCall(call.name, call.input);
      if (!valid.ok) return { callId: call.id, name: call.name, ok: false, error: valid.error, output: valid.message };

      const ctx = activityContext();
      const wf = ctx?.info.workflowExecution;
      // Stable across retries of this activity, so a retry never runs the call twice.
      const key = ctx && wf ? `${wf.workflowId}/${ctx.info.activityId}` : `${sessionId}/${call.id}`;
      const op = toExecutorOp(valid.name, valid.input, config);
      const client = runtime.client(handle.containerId);
      const id = client.newRequestId();
      const started = Date.now();

      ctx?.heartbeat({ requestId: id });
      const beat = ctx ? setInterval(() => ctx.heartbeat({ requestId: id }), HEARTBEAT_MS) : undefined;
      const answer = client.request(op.op, op.args, { id, key, timeoutMs: op.timeoutMs });
      try {
        const response = ctx ? await Promise.race([answer, ctx.cancelled]) : await answer;
        return toToolResult(call, valid.name, response, config.outputLimit, Date.now() - started);
      } catch (err) {
        if (err instanceof CancelledFailure) {
          answer.catch(() => undefined);
          await client.cancel(id).catch(() => false);
          throw err;
        }
        if (err instanceof ExecutorGoneError) throw containerGone(handle.containerId, err.detail);
        if (err instanceof ExecutorTimeoutError) {
          throw ApplicationFailure.retryable(`${err.message}; the retry reuses key ${key}`, SandboxFailure.ExecutorTimeout);
        }
        throw classifyDockerError(err);
      } finally {
        if (beat) clearInterval(beat);
      }
    },

    /** Remove the session's container(s) and workspace volume. Idempotent. */
    async destroySandbox({ sessionId }: { sessionId: string }): Promise<{ removed: boolean }> {
      try {
        const removed = await removeSession(docker, sessionId, (id) => runtime.forget(id));
        return { removed };
      } catch (err) {
        throw classifyDockerError(err);
      }
    },
  };
}

export type SandboxActivities = ReturnType<typeof createSandboxActivities>;
