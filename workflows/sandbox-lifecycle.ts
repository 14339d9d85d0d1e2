/**
 * A session's sandbox as the workflow sees it: which container (generation, host)
 * holds it, the last snapshot of its files, and what to do when it is lost.
 *
 * Deterministic code: every Docker operation is an activity. A container that
 * disappears (killed, OOM, dockerd restarted) or a host whose worker stops
 * answering costs a restore from the last snapshot on any host, never a step.
 */
import { ActivityFailure, ApplicationFailure, TimeoutFailure, patched, proxyActivities } from '@temporalio/workflow';
import type { SandboxActivities } from '../common/activities';
import { SANDBOX_QUEUE } from '../common/constants';
import type { EventData, EventType } from '../common/events';
import { SandboxFailure } from '../common/failures';
import { sandboxLimits } from '../common/sandbox-spec';
import { DEFAULT_SANDBOX_MCP_TIMEOUT_SEC, SANDBOX_MCP_START_TIMEOUT_SEC, type McpTool, type SandboxMcpServer } from '../common/mcp';
import { SNAPSHOT_TOOLS } from '../common/tools';
import type { NetworkReport, SandboxHandle, SandboxSpec, ToolCall, ToolResult } from '../common/types';

export type Emit = <T extends EventType>(type: T, data: EventData<T>) => void;

/** Restores allowed for one tool call before it is reported to the model as failed. */
const MAX_RESTORES_PER_CALL = 2;

const { provisionSandbox } = proxyActivities<SandboxActivities>({
  taskQueue: SANDBOX_QUEUE,
  startToCloseTimeout: '5 minutes', // a restore copies the workspace back
  heartbeatTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 },
});

/**
 * Tool calls of sessions with this marker notice a dead sandbox worker 1.5 s after its last heartbeat
 * (was 10 s) and are retried 200 ms later (was 1 s). Only calls that outlive the activity's first
 * heartbeat interval heartbeat at all, so a short call costs the server nothing more; a retry is safe,
 * as it is answered by the executor's journal (it waits for the call still running there). Only for
 * hosts whose handle says their calls beat often enough ({@link FAST_HEARTBEAT_MAX_MS}).
 */
export const PATCH_FAST_RECOVERY = 'keel-fast-recovery';
/** A host whose tool calls heartbeat at least this often (`SandboxHandle.toolHeartbeatMs`) gets the short timeout. */
const FAST_HEARTBEAT_MAX_MS = 500;
/**
 * A host whose tool calls beat at least this often (hosts since issue 12 beat every 0.3 s) gets a 1 s
 * heartbeat timeout and a 100 ms first retry. Decided from the handle, which is in the history, so a replay
 * decides the same; the command sequence is unchanged (only the activity's timeouts differ).
 */
const FASTER_HEARTBEAT_MAX_MS = 300;

/** Sandbox activities bound to the queue of the host that holds the container; `fast`: {@link PATCH_FAST_RECOVERY}. */
function onHost(handle: SandboxHandle, timeoutSec: number, hostTimeoutSec: number, fast = false) {
  const faster = fast && (handle.toolHeartbeatMs ?? Infinity) <= FASTER_HEARTBEAT_MAX_MS;
  return proxyActivities<SandboxActivities>({
    taskQueue: handle.hostQueue,
    // The command's own timeout plus room for the snapshot; a dead worker is noticed by the heartbeat.
    startToCloseTimeout: `${timeoutSec + 120}s`,
    // A host whose worker is gone leaves the task queued: give up on it and restore elsewhere.
    scheduleToStartTimeout: `${hostTimeoutSec}s`,
    heartbeatTimeout: faster ? '1s' : fast ? '1500ms' : '10s',
    retry: { initialInterval: faster ? '100ms' : fast ? '200ms' : '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 },
  });
}

/** Why the sandbox is gone, or undefined when `err` is another failure. */
export function sandboxLoss(err: unknown): string | undefined {
  if (!(err instanceof ActivityFailure)) return undefined;
  const cause = err.cause;
  if (cause instanceof ApplicationFailure && cause.type === SandboxFailure.ContainerGone) return `container lost: ${cause.message}`;
  if (cause instanceof TimeoutFailure && cause.timeoutType === 'SCHEDULE_TO_START') return 'sandbox host stopped answering';
  return undefined;
}

/** What a workflow run hands the next about the sandbox (continue-as-new). */
export interface SandboxCarry {
  handle?: SandboxHandle;
  generation: number;
  lastSnapshot?: string;
}

export class SessionSandbox {
  handle?: SandboxHandle;
  generation = 0;
  /** Id of the snapshot of the sandbox's files after the last step that changed them. */
  lastSnapshot?: string;
  /** Gets what a networked session's proxy refused since the last call, reported when the container is released. */
  onRefused?: (report: NetworkReport) => void;
  private readonly hostTimeoutSec: number;

  constructor(
    private readonly sessionId: string,
    private readonly spec: SandboxSpec | undefined,
    private readonly emit: Emit,
    carried?: SandboxCarry,
  ) {
    this.hostTimeoutSec = sandboxLimits(spec).hostTimeoutSec;
    if (carried) {
      this.handle = carried.handle;
      this.generation = carried.generation;
      this.lastSnapshot = carried.lastSnapshot;
    }
  }

  /** The state a new workflow run needs to carry on with the same container (or restore it). */
  carry(): SandboxCarry {
    return { generation: this.generation, ...(this.handle ? { handle: this.handle } : {}), ...(this.lastSnapshot ? { lastSnapshot: this.lastSnapshot } : {}) };
  }

  /** A container holding the session's files: new, or restored from the last snapshot. */
  async provision(why: 'start' | 'resume' | string): Promise<SandboxHandle> {
    this.generation++;
    const handle = await provisionSandbox({
      sessionId: this.sessionId,
      spec: this.spec,
      generation: this.generation,
      restoreFrom: this.lastSnapshot,
    });
    this.handle = handle;
    const where = { containerId: handle.containerId, hostId: handle.hostId, image: handle.image, generation: this.generation, ...(handle.runtime ? { runtime: handle.runtime } : {}) };
    if (why === 'start') this.emit('sandbox.provisioned', where);
    else if (why === 'resume') this.emit('sandbox.resumed', { ...where, snapshot: this.lastSnapshot });
    else this.emit('sandbox.restored', { ...where, snapshot: this.lastSnapshot, reason: why });
    return handle;
  }

  /**
   * Run a validated tool call, restoring the sandbox first if it was lost. `snapshot: false`
   * (an eval's check) leaves the files unsnapshotted whatever the tool.
   */
  async run(call: ToolCall, timeoutSec: number, opts: { snapshot?: boolean } = {}): Promise<ToolResult> {
    return await this.onLiveContainer(call, timeoutSec, (host, handle) =>
      host.runTool({
        sessionId: this.sessionId,
        handle: { containerId: handle.containerId },
        call,
        snapshot: opts.snapshot !== false && SNAPSHOT_TOOLS.has(call.name) ? { parent: this.lastSnapshot } : undefined,
      }),
    );
  }

  /**
   * Start the session's sandbox MCP servers and list their tools (restoring the sandbox first if it was lost).
   * Their start and listing take at most the start timeout plus each server's call timeout.
   */
  async listMcp(servers: Record<string, SandboxMcpServer>): Promise<{ tools: McpTool[]; skipped: string[] }> {
    const timeoutSec = Object.values(servers).reduce((sum, s) => sum + SANDBOX_MCP_START_TIMEOUT_SEC + (s.timeoutSec ?? DEFAULT_SANDBOX_MCP_TIMEOUT_SEC), 0);
    for (let restores = 0; ; restores++) {
      const handle = this.handle ?? (await this.provision('resume'));
      try {
        return await onHost(handle, timeoutSec, this.hostTimeoutSec).listSandboxMcpTools({ sessionId: this.sessionId, handle: { containerId: handle.containerId }, servers });
      } catch (err) {
        const loss = sandboxLoss(err);
        if (!loss || restores >= MAX_RESTORES_PER_CALL) throw err;
        this.handle = undefined;
        await this.provision(loss);
        await this.removeOlderGenerations();
      }
    }
  }

  /** One call of a sandbox MCP tool, as `run` runs a built-in tool: restored if lost, snapshotted after. */
  async runMcp(call: ToolCall, tool: McpTool, server: SandboxMcpServer): Promise<ToolResult> {
    const timeoutSec = SANDBOX_MCP_START_TIMEOUT_SEC + (server.timeoutSec ?? DEFAULT_SANDBOX_MCP_TIMEOUT_SEC);
    return await this.onLiveContainer(call, timeoutSec, (host, handle) =>
      host.callSandboxMcpTool({ sessionId: this.sessionId, handle: { containerId: handle.containerId }, call, tool, server, snapshot: { parent: this.lastSnapshot } }),
    );
  }

  /** Run `fn` on the host holding the container, restoring the sandbox first if it was lost (at most MAX_RESTORES_PER_CALL times). */
  private async onLiveContainer(
    call: ToolCall,
    timeoutSec: number,
    fn: (host: ReturnType<typeof onHost>, handle: SandboxHandle) => Promise<ToolResult>,
  ): Promise<ToolResult> {
    for (let restores = 0; ; restores++) {
      const handle = this.handle ?? (await this.provision('resume'));
      try {
        const fast = (handle.toolHeartbeatMs ?? Infinity) <= FAST_HEARTBEAT_MAX_MS && patched(PATCH_FAST_RECOVERY);
        const result = await fn(onHost(handle, timeoutSec, this.hostTimeoutSec, fast), handle);
        if (result.snapshot) this.lastSnapshot = result.snapshot.id;
        return result;
      } catch (err) {
        const loss = sandboxLoss(err);
        if (!loss) throw err;
        // Whatever the command did is gone with the container: it runs again on the files as they were before it.
        this.handle = undefined;
        if (restores >= MAX_RESTORES_PER_CALL) {
          return {
            callId: call.id,
            name: call.name,
            ok: false,
            error: 'SandboxLost',
            output: `The sandbox was lost ${restores + 1} times while running this call (${loss}). ` +
              'Its files are as they were before the call. If the command exhausts memory or kills its container, try another way.',
          };
        }
        await this.provision(loss);
        await this.removeOlderGenerations();
      }
    }
  }

  /**
   * Release the container while the session waits. A last snapshot first catches what
   * background jobs wrote since the last step; a host that is gone already released it.
   */
  async suspend(reason: string): Promise<void> {
    if (!this.handle) return;
    const handle = this.handle;
    this.handle = undefined;
    const host = onHost(handle, 60, this.hostTimeoutSec);
    try {
      const snapshot = await host.snapshotSandbox({ sessionId: this.sessionId, handle: { containerId: handle.containerId }, parent: this.lastSnapshot });
      if (snapshot) {
        this.lastSnapshot = snapshot.id;
        this.emit('sandbox.snapshot', { ...snapshot, reason: 'suspend' });
      }
      const destroyed = await host.destroySandbox({ sessionId: this.sessionId });
      if (destroyed.network) this.onRefused?.(destroyed.network);
    } catch (err) {
      const loss = sandboxLoss(err);
      if (!loss) throw err;
      // Nothing to release; the session resumes from the last snapshot it has.
      this.emit('sandbox.suspended', { containerId: handle.containerId, generation: this.generation, snapshot: this.lastSnapshot, reason, lost: loss });
      return;
    }
    this.emit('sandbox.suspended', { containerId: handle.containerId, generation: this.generation, snapshot: this.lastSnapshot, reason });
  }

  /** Remove the session's containers at the end; the last snapshot stays in the blob store. */
  async teardown(): Promise<void> {
    if (!this.handle) return;
    const handle = this.handle;
    this.handle = undefined;
    try {
      const removed = await onHost(handle, 60, this.hostTimeoutSec).destroySandbox({ sessionId: this.sessionId });
      if (removed.network) this.onRefused?.(removed.network);
      this.emit('sandbox.removed', { containerId: handle.containerId, removed: removed.removed, snapshot: this.lastSnapshot });
    } catch (err) {
      // The reaper removes what a dead host left behind; the session still ends.
      this.emit('session.error', { message: `sandbox teardown failed: ${(err as Error).message}` });
    }
  }

  private async removeOlderGenerations(): Promise<void> {
    if (!this.handle) return;
    try {
      await onHost(this.handle, 60, this.hostTimeoutSec).destroySandbox({ sessionId: this.sessionId, belowGeneration: this.generation });
    } catch {
      // Best effort: an unreachable host's container is the reaper's to remove.
    }
  }
}
