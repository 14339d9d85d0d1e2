/**
 * The sandbox activities: provision (or restore) a session's container, run
 * tool calls in it, snapshot it, destroy it. They run on the sandbox-host
 * worker of the Docker host that holds the container (the handle's `hostQueue`).
 * The Docker work itself is in `host/`; this file is the Temporal boundary.
 */
import { Context } from '@temporalio/activity';
import { CancelledFailure } from '@temporalio/common';
import { fitsInline, preview, putContent, readBlob, type BlobStore } from '../../blobs';
import type { ContainerRef, SandboxActivities } from '../../common/activities';
import { SANDBOX_DEFAULTS } from '../../common/defaults';
import { SandboxFailure } from '../../common/failures';
import { egressRules, networkPolicy, sandboxLimits, sandboxSpecProblems } from '../../common/sandbox-spec';
import { runsInSandbox, validateToolCall } from '../../common/tools';
import type { ContentRef, NetworkReport, SandboxHandle, SandboxRuntimeInfo, SandboxSpec, SnapshotInfo, ToolCall, ToolResult } from '../../common/types';
import { claimContainer, NameTakenError, startAttached, waitReady, type Ping } from '../../host/bring-up';
import { statusOf } from '../../host/docker-errors';
import { Egress } from '../../host/egress';
import { ExecutorGoneError, type ExecutorClient, type ExecutorResponse } from '../../host/executor-client';
import { imageExists } from '../../host/image';
import { ensureVolume, ownerOf, remountWorkspace, removeSession, sessionContainers, type DiskOptions } from '../../host/inventory';
import { createOptions, dockerRuntime } from '../../host/lockdown';
import type { WarmPool } from '../../host/pool';
import { imageKey } from '../../host/pool-images';
import type { SandboxRuntime } from '../../host/runtime';
import { RuntimeCheck } from '../../host/runtimes';
import type { Progress } from '../../common/progress';
import { restoreSnapshot, takeSnapshot } from '../../host/snapshots';
import { storable } from '../../store/events';
import { restoreBytes, restoreSeconds, snapshotBytes, snapshotSeconds, timed, toolCallSeconds } from '../../telemetry/metrics';
import { inSpan } from '../../telemetry/spans';
import { resolveSandboxConfig, type SandboxConfig } from './config';
import { badRequest, classifyDockerError, classifySandboxError, containerGone, imageMissing, runtimeMissing } from './errors';
import { toExecutorOp, toToolResult } from './tool-ops';
import { callSandboxTool, listSandboxTools, SandboxMcpError } from './mcp';
import { argumentChecker } from '../mcp';
import { failure, McpFailure } from '../../common/failures';
import type { McpTool, SandboxMcpServer } from '../../common/mcp';

/** How often a running sandbox activity heartbeats (provision, snapshot, destroy: 10 s or 30 s timeouts). */
const HEARTBEAT_MS = 2000;
/**
 * How often a running tool call heartbeats: well inside its 1 s heartbeat timeout (1.5 s for hosts that
 * beat every 0.4 s; workflows/sandbox-lifecycle.ts, PATCH_FAST_RECOVERY). The SDK sends at most one beat
 * per {@link HEARTBEAT_THROTTLE_MS}, and none for a call that ends before the first interval: a short call
 * costs the server nothing more, a long one about 3.3 beats a second (was 2).
 */
const TOOL_HEARTBEAT_MS = 300;
/** The sandbox workers' `maxHeartbeatThrottleInterval`: a long call's beat reaches the server every 0.3 s. */
export const HEARTBEAT_THROTTLE_MS = 300;

/** What a running tool call's heartbeat carries: its executor request, and who ran it (see `forgetDeadSticky`). */
interface ToolBeat {
  /** The executor request of a built-in tool's call (MCP calls carry none). */
  requestId?: string;
  /** The worker process that ran the attempt, when it also runs session workflows (role `all`). */
  sessionWorker?: string;
  /** How far a long snapshot or restore has got, for `keel tail` and the console. */
  progress?: Progress;
}

export interface SandboxActivityDeps {
  /** Holds the Docker client and the attach streams; the worker closes it at shutdown. */
  runtime: SandboxRuntime;
  /** Where snapshots go; every host that may restore a session must share it. */
  blobs: BlobStore;
  /** Resolved with {@link resolveSandboxConfig}; unset fields take their defaults. */
  config?: Partial<SandboxConfig>;
  /**
   * Warm pools, at most one per image (`KEEL_POOL_SIZE`, `KEEL_POOL_IMAGES`): a session whose image is a
   * pool's (compared with {@link imageKey}), with that pool's runtime and disks, the default limits and no
   * network, claims one of its containers. @default none
   */
  pools?: readonly WarmPool[];
  /**
   * Set when this process also runs the session worker (role `all`): a name unique to the process. A tool
   * call's heartbeat carries it, so that the retry of a call whose process died can send the session's next
   * workflow task to the session queue at once instead of waiting out the dead worker's sticky queue
   * (`KEEL_STICKY_TIMEOUT_MS`). @default none
   */
  sessionWorker?: string;
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
 * Heartbeat every `everyMs` until the returned function is called. `details` is sent with each
 * beat (a function: its value at the time), e.g. the progress of a snapshot, which clients read
 * from the workflow's pending activities (`keel run`'s status lines).
 */
function keepBeating(ctx: Context | undefined, details?: unknown, everyMs = HEARTBEAT_MS): () => void {
  if (!ctx) return () => undefined;
  // No beat at the start: most calls finish long before the first interval, and each
  // beat is a round trip through the server (measured: ~3.5 ms of server CPU per call).
  const timer = setInterval(() => ctx.heartbeat(typeof details === 'function' ? (details as () => unknown)() : details), everyMs);
  return () => clearInterval(timer);
}

/** Build the sandbox activities of one sandbox host. */
export function createSandboxActivities(deps: SandboxActivityDeps) {
  const { runtime, blobs } = deps;
  const pools = deps.pools ?? [];
  const { docker } = runtime;
  const config = resolveSandboxConfig(deps.config);
  const egress = new Egress(runtime, config.egress);

  const runtimes = new RuntimeCheck(docker);
  const checkMcpArguments = argumentChecker();
  /** The Docker runtime a session's container runs under. */
  const runtimeOf = (spec: SandboxSpec | undefined): string => spec?.runtime ?? config.defaultRuntime;

  /** A pool container fits a spec with the pool's runtime and disks, the default limits, and no network. */
  const poolFits = (pool: WarmPool, spec: SandboxSpec | undefined): boolean =>
    spec?.network === undefined &&
    runtimeOf(spec) === pool.ociRuntime &&
    (pool.options.diskDir ?? null) === config.diskDir &&
    (config.diskDir === null || (spec?.diskMb ?? SANDBOX_DEFAULTS.diskMb) === SANDBOX_DEFAULTS.diskMb) &&
    (spec?.memoryMb ?? SANDBOX_DEFAULTS.memoryMb) === SANDBOX_DEFAULTS.memoryMb &&
    (spec?.cpus ?? SANDBOX_DEFAULTS.cpus) === SANDBOX_DEFAULTS.cpus &&
    (spec?.pidsLimit ?? SANDBOX_DEFAULTS.pidsLimit) === SANDBOX_DEFAULTS.pidsLimit;

  /** The pool that serves this spec: the one of its image, when its containers fit the spec. */
  const poolFor = (spec: SandboxSpec | undefined): WarmPool | undefined => {
    const image = imageKey(spec?.image ?? config.defaultImage);
    const pool = pools.find((p) => imageKey(p.options.image) === image);
    return pool && poolFits(pool, spec) ? pool : undefined;
  };

  const images = new Map<string, Promise<Pick<SandboxRuntimeInfo, 'imageId' | 'imageDigests' | 'executor'>>>();
  /** The image's id, digests and executor version (its recipe label), read once per image. */
  const imageInfo = (image: string) => {
    let info = images.get(image);
    if (!info) {
      info = docker
        .getImage(image)
        .inspect()
        .then((i) => ({ imageId: i.Id, imageDigests: i.RepoDigests ?? [], executor: i.Config?.Labels?.['keel.recipe'] ?? 'unknown' }));
      info.catch(() => images.delete(image));
      images.set(image, info);
    }
    return info;
  };

  const handleFor = async (containerId: string, image: string, generation: number, spec: SandboxSpec | undefined, restoredFrom?: string): Promise<SandboxHandle> => {
    const { memoryMb, cpus, pidsLimit, diskMb } = sandboxLimits(spec);
    return {
      containerId,
      generation,
      ...(restoredFrom ? { restoredFrom } : {}),
      hostQueue: config.hostQueue,
      hostId: config.hostId,
      image,
      runtime: {
        ...(await imageInfo(image)),
        limits: { memoryMb, cpus, pidsLimit, ...(config.diskDir !== null ? { diskMb } : {}) },
        network: networkPolicy(spec),
        ociRuntime: runtimeOf(spec),
      },
      toolHeartbeatMs: TOOL_HEARTBEAT_MS,
    };
  };

  /** The /workspace filesystem a session's spec asks for, or none when this host has no disk quota. */
  const diskOf = (spec: SandboxSpec | undefined): DiskOptions | undefined =>
    config.diskDir === null ? undefined : { dir: config.diskDir, sizeMb: sandboxLimits(spec).diskMb };

  /** The container of one generation if it exists, started and answering; finishes a claim a crashed attempt began. */
  async function existing(sessionId: string, generation: number, spec: SandboxSpec | undefined): Promise<{ id: string; image: string; ping: Ping } | undefined> {
    const mine = (await sessionContainers(docker, sessionId)).filter((c) => c.generation === generation);
    const c = mine.find((m) => m.state === 'running') ?? mine[0];
    if (!c) return undefined;
    // A stopped container's disk may be unmounted (a host reboot): mount it before Docker binds the empty directory.
    if (c.state !== 'running') {
      if (c.poolVolume !== undefined) await remountWorkspace(docker, c.poolVolume);
      else await ensureVolume(docker, sessionId, config.hostId, generation, diskOf(spec));
    }
    const ping = c.state === 'running' ? await waitReady(runtime.client(c.id)) : await startAttached(runtime, c.id);
    if (c.poolVolume !== undefined) await claimContainer(runtime, { id: c.id, name: c.name, hostId: config.hostId }, sessionId, generation);
    return { id: c.id, image: c.image, ping };
  }

  /** Bring up (or find) the container of one generation; returns its id, image and ping answer. */
  async function upContainer(sessionId: string, generation: number, spec: SandboxSpec | undefined) {
    const image = spec?.image ?? config.defaultImage;
    const found = await existing(sessionId, generation, spec);
    if (found) return found;
    const pool = poolFor(spec);
    if (pool) {
      try {
        const claimed = await pool.claim(sessionId, generation);
        if (claimed) return { id: claimed.id, image, ping: claimed.ping };
      } catch (err) {
        if (!(err instanceof NameTakenError)) throw err;
        const now = await existing(sessionId, generation, spec);
        if (now) return now;
      }
    }

    if (!(await imageExists(docker, image))) throw imageMissing(image);
    const ociRuntime = runtimeOf(spec);
    const allow = egressRules(spec);
    // A networked gVisor sandbox runs under runsc's networked registration (runsc itself has --network=none).
    const registered = dockerRuntime(ociRuntime, allow.length > 0);
    const known = await runtimes.missing(registered);
    if (known) throw runtimeMissing(registered, known, config.hostId);
    await ensureVolume(docker, sessionId, config.hostId, generation, diskOf(spec));
    // The proxy runs from this host's own image, which has it (a session's image need not).
    const attachment = allow.length ? await egress.ensure({ sessionId, hostId: config.hostId, image: config.defaultImage, allow }) : undefined;
    const options = createOptions({ sessionId, hostId: config.hostId, image, spec, generation, runtime: ociRuntime, ...(attachment ? { egress: attachment } : {}) });
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
        throw failure(
          SandboxFailure.NameConflict,
          `container name ${options.name} belongs to session ${owner.sessionId} generation ${owner.generation}`,
        );
      }
      id = info.Id;
    }
    return { id, image, ping: await startAttached(runtime, id) };
  }

  /** A stored tool input (JSON, or the raw text the model sent when it was not JSON). */
  async function wholeInput(ref: ContentRef): Promise<unknown> {
    const raw = (await readBlob(blobs, ref.sha)).toString('utf8');
    try {
      return JSON.parse(raw) as unknown;
    } catch {
      return raw;
    }
  }

  /** Keep a large output in the blob store; the result carries a preview and the reference. */
  async function storeOutput(result: ToolResult, response: ExecutorResponse): Promise<ToolResult> {
    if (fitsInline(result.output)) return result;
    // Bytes the executor cut from the middle of an output past the storage cap: the reference says so.
    const cutBytes = response.ok && typeof response.result.cutBytes === 'number' ? response.result.cutBytes : 0;
    const outputRef = await putContent(blobs, result.output, { cutBytes });
    return { ...result, output: preview(result.output), outputRef };
  }

  /**
   * A retried tool call whose last attempt ran in another process that also ran session workflows
   * (its heartbeat says so): that process is most likely dead (the attempt's heartbeat timed out), and
   * it may hold the session's sticky queue, where the next workflow task would wait for
   * `KEEL_STICKY_TIMEOUT_MS` before going to the session queue. Clearing the stickiness sends it there
   * at once (measured: ~1 s of a worker SIGKILL's recovery). One server call, on retries only; best
   * effort (the sticky timeout still applies when it fails). A live worker that loses the stickiness
   * replays the session on its next task, which is the price when the process was only stalled.
   */
  async function forgetDeadSticky(ctx: Context): Promise<void> {
    const last = ctx.info.heartbeatDetails as Partial<ToolBeat> | undefined;
    const wf = ctx.info.workflowExecution;
    if (!last?.sessionWorker || last.sessionWorker === deps.sessionWorker || !wf) return;
    try {
      // At most a second: the retry must not wait on a server that is slow to answer.
      await ctx.client.withDeadline(Date.now() + 1000, () =>
        ctx.client.workflowService.resetStickyTaskQueue({ namespace: ctx.info.workflowNamespace, execution: { workflowId: wf.workflowId, runId: wf.runId } }),
      );
    } catch {
      // Best effort: the workflow task still reaches a live worker after the sticky timeout.
    }
  }

  /** A snapshot with its span and metrics; null when nothing changed since `parent`. */
  async function measuredSnapshot(client: ExecutorClient, sessionId: string, parent: string | undefined, onProgress?: (p: Progress) => void): Promise<SnapshotInfo | null> {
    const { info } = await timed(snapshotSeconds, {}, () =>
      inSpan('snapshot', { 'keel.session_id': sessionId, ...(parent ? { 'keel.snapshot_parent': parent } : {}) }, async (span) => {
        const outcome = await takeSnapshot(client, blobs, parent, { onProgress });
        if (outcome.info) span.setAttributes({ 'keel.snapshot_id': outcome.info.id, 'keel.snapshot_uploaded_bytes': outcome.info.uploadedBytes });
        return outcome;
      }),
      (o) => (o.info ? 'ok' : 'unchanged'),
    );
    if (info) {
      snapshotBytes.inc({ kind: 'changed' }, info.changedBytes);
      snapshotBytes.inc({ kind: 'uploaded' }, info.uploadedBytes);
    }
    return info;
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
      if (!Number.isInteger(generation) || generation < 1) throw badRequest(`generation must be an integer >= 1, not ${generation}`);
      // A spec that reached us without the client's check (another client, an old session) must not lift a limit.
      const problems = sandboxSpecProblems(spec);
      if (problems.length) throw badRequest(problems.join('; '));
      let progress: Progress | undefined;
      const stop = keepBeating(activityContext(), () => (progress ? { progress } : undefined));
      let containerId = '';
      try {
        const up = await upContainer(sessionId, generation, spec);
        containerId = up.id;
        if (!spec?.network) egress.none(sessionId);
        if (restoreFrom && up.ping.restoredFrom !== restoreFrom) {
          const client = runtime.client(up.id);
          const restored = await timed(restoreSeconds, {}, () =>
            inSpan('restore', { 'keel.session_id': sessionId, 'keel.snapshot_id': restoreFrom }, () => restoreSnapshot(client, blobs, restoreFrom, (p) => (progress = p))),
          );
          restoreBytes.inc(restored.bytes);
        }
        return await handleFor(up.id, up.image, generation, spec, restoreFrom);
      } catch (err) {
        if (err instanceof ExecutorGoneError) throw containerGone(err.containerId, `${err.detail} while starting; see \`docker logs\``);
        throw classifySandboxError(err, containerId);
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
      handle: ContainerRef;
      call: ToolCall;
      snapshot?: { parent?: string };
    }): Promise<ToolResult> {
      const input = call.inputRef
        ? await wholeInput(call.inputRef).catch((err: unknown) => {
            throw classifySandboxError(err, handle.containerId);
          })
        : call.input;
      const valid = validateToolCall(call.name, input);
      if (!valid.ok) return { callId: call.id, name: call.name, ok: false, error: valid.error, output: valid.message };
      if (!runsInSandbox(valid.name)) {
        return { callId: call.id, name: call.name, ok: false, error: 'UnknownTool', output: `${call.name} is carried out by the session, not the sandbox` };
      }

      const ctx = activityContext();
      const wf = ctx?.info.workflowExecution;
      // Stable across retries of this activity, so a retry never runs the call twice; unique across
      // the session's runs (activity ids start again at 1 after continue-as-new or a reset).
      const key = ctx && wf ? `${wf.workflowId}/${wf.runId}/${ctx.info.activityId}` : `${sessionId}/${call.id}`;
      // What runs is what the event log records: lone surrogates (and NUL) as U+FFFD, which the executor
      // can encode (it used to fail the call with a UnicodeEncodeError) and Postgres can store.
      const op = toExecutorOp(valid.name, storable(valid.input) as typeof valid.input, config);
      const client = runtime.client(handle.containerId);
      const id = client.newRequestId();
      const started = Date.now();

      if (ctx && ctx.info.attempt > 1) await forgetDeadSticky(ctx);
      let progress: Progress | undefined;
      const beat = (): ToolBeat => ({ requestId: id, ...(deps.sessionWorker ? { sessionWorker: deps.sessionWorker } : {}), ...(progress ? { progress } : {}) });
      const stop = keepBeating(ctx, beat, TOOL_HEARTBEAT_MS);
      const answer = client.request(op.op, op.args, { id, key, timeoutMs: op.timeoutMs });
      try {
        // The span and the latency cover the call into the container, not storing its output or the snapshot.
        const response = await timed(toolCallSeconds, { tool: valid.name }, () =>
          inSpan(`executor ${op.op}`, { 'keel.session_id': sessionId, 'keel.tool': valid.name, 'keel.call_id': call.id, 'keel.idempotency_key': key }, async (span) => {
            const r = ctx ? await Promise.race([answer, ctx.cancelled]) : await answer;
            span.setAttribute('keel.ok', r.ok);
            return r;
          }),
          (r) => (r.ok ? 'ok' : 'tool_error'),
        );
        const result = await storeOutput(toToolResult(call, valid.name, response, config.outputLimit, Date.now() - started), response);
        const network = await egress.drain(sessionId);
        if (network) result.network = network;
        if (snapshot) {
          const info = await measuredSnapshot(client, sessionId, snapshot.parent, (p) => (progress = p));
          if (info) result.snapshot = info;
        }
        return result;
      } catch (err) {
        if (err instanceof CancelledFailure) {
          answer.catch(() => undefined);
          // Only a cancel the session asked for kills the command. A heartbeat that timed out (the Temporal
          // server was away for a moment), a worker shutting down or a task the server no longer knows leave
          // it running: the retry comes with the same key and the executor hands it the same command's answer.
          if (ctx?.cancellationDetails?.cancelRequested !== false) await client.cancel(id).catch(() => false);
          throw err;
        }
        throw classifySandboxError(err, handle.containerId, key);
      } finally {
        stop();
      }
    },

    /** The tools of the session's sandbox MCP servers, starting them if they are not running. */
    async listSandboxMcpTools({ handle, servers }: { sessionId: string; handle: ContainerRef; servers: Record<string, SandboxMcpServer> }): Promise<{ tools: McpTool[]; skipped: string[] }> {
      const stop = keepBeating(activityContext());
      try {
        return await listSandboxTools(runtime.client(handle.containerId), servers);
      } catch (err) {
        if (err instanceof SandboxMcpError) {
          throw failure(McpFailure.SandboxUnavailable, `${err.message}. Check the server's command and args in the session's mcpSandbox, and that the sandbox image has it (try it with a shell call: \`<command> <args> < /dev/null\`)`);
        }
        throw classifySandboxError(err, handle.containerId);
      } finally {
        stop();
      }
    },

    /**
     * One call of a sandbox MCP tool: arguments checked against the tool's schema (Ajv), then sent to its
     * server in the container, keyed like runTool so a retry never calls it twice, then (with `snapshot`)
     * a snapshot as after any tool. The server's failures (did not start, crashed, hung, malformed answer)
     * are error results; a lost container is thrown as for runTool, so the session restores it.
     */
    async callSandboxMcpTool({
      sessionId,
      handle,
      call,
      tool,
      server,
      snapshot,
    }: {
      sessionId: string;
      handle: ContainerRef;
      call: ToolCall;
      tool: McpTool;
      server: SandboxMcpServer;
      snapshot?: { parent?: string };
    }): Promise<ToolResult> {
      const ctx = activityContext();
      const wf = ctx?.info.workflowExecution;
      const key = ctx && wf ? `${wf.workflowId}/${wf.runId}/${ctx.info.activityId}` : `${sessionId}/${call.id}`;
      const base = { callId: call.id, name: call.name };
      if (ctx && ctx.info.attempt > 1) await forgetDeadSticky(ctx);
      let progress: Progress | undefined;
      const beat = (): ToolBeat => ({ ...(deps.sessionWorker ? { sessionWorker: deps.sessionWorker } : {}), ...(progress ? { progress } : {}) });
      const stop = keepBeating(ctx, beat, TOOL_HEARTBEAT_MS);
      const started = Date.now();
      try {
        const input = call.inputRef ? await wholeInput(call.inputRef) : call.input;
        const invalid = checkMcpArguments(call, tool, input);
        if (invalid) return invalid;
        const client = runtime.client(handle.containerId);
        const outcome = await timed(toolCallSeconds, { tool: 'mcp' }, () =>
          inSpan(`executor mcp ${tool.name}`, { 'keel.session_id': sessionId, 'keel.tool': call.name, 'keel.call_id': call.id, 'keel.idempotency_key': key }, () => {
            const answer = callSandboxTool(client, call, tool, server, storable(input), key);
            if (!ctx) return answer;
            // A cancelled session does not wait for the server: the executor ends the call at its own timeout.
            answer.catch(() => undefined);
            return Promise.race([answer, ctx.cancelled]);
          }),
          (o) => (o.ok ? 'ok' : 'tool_error'),
        );
        const note = outcome.restarted
          ? `\n[keel: the MCP server "${tool.server}" was started again for this call (a new container, or it had exited or been stopped); what it held in memory is gone]`
          : '';
        const text = outcome.output + note;
        const result: ToolResult = { ...base, ok: outcome.ok, ...(outcome.error ? { error: outcome.error } : {}), output: preview(text), durationMs: Date.now() - started };
        if (!fitsInline(text)) result.outputRef = await putContent(blobs, text);
        else result.output = text;
        if (snapshot) {
          const info = await measuredSnapshot(client, sessionId, snapshot.parent, (p) => (progress = p));
          if (info) result.snapshot = info;
        }
        return result;
      } catch (err) {
        if (err instanceof CancelledFailure) throw err;
        throw classifySandboxError(err, handle.containerId, key);
      } finally {
        stop();
      }
    },

    /** Snapshot the sandbox now, compared with `parent`; null when nothing changed since it. */
    async snapshotSandbox({ sessionId, handle, parent }: { sessionId: string; handle: ContainerRef; parent?: string }): Promise<SnapshotInfo | null> {
      let progress: Progress | undefined;
      const stop = keepBeating(activityContext(), () => (progress ? { progress } : undefined));
      try {
        return await measuredSnapshot(runtime.client(handle.containerId), sessionId, parent, (p) => (progress = p));
      } catch (err) {
        throw classifySandboxError(err, handle.containerId);
      } finally {
        stop();
      }
    },

    /**
     * Remove the session's containers and workspace volumes, all generations or only those
     * below `belowGeneration`. Idempotent. Snapshots stay in the blob store.
     */
    async destroySandbox({ sessionId, belowGeneration }: { sessionId: string; belowGeneration?: number }): Promise<{ removed: boolean; network?: NetworkReport }> {
      // Removing a container can take a while on a loaded host: keep the heartbeat timeout at bay.
      const stop = keepBeating(activityContext());
      try {
        // What the proxy refused since the last call (a background job, say) goes before the proxy does.
        const network = belowGeneration === undefined ? await egress.drain(sessionId) : undefined;
        const removed = await removeSession(docker, sessionId, (id) => runtime.forget(id), belowGeneration);
        if (belowGeneration === undefined) egress.forget(sessionId);
        return { removed, ...(network ? { network } : {}) };
      } catch (err) {
        throw classifyDockerError(err);
      } finally {
        stop();
      }
    },
  } satisfies SandboxActivities;
}
