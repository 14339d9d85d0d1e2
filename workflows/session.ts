/**
 * The agent session workflow: one durable loop of model turns and tool calls.
 *
 * Deterministic code only (no I/O, clock or randomness): everything with a side
 * effect is an activity. Events get their sequence numbers here, so a retried
 * write to Postgres is a no-op rather than a duplicate.
 *
 * History stays bounded however long the session runs: the transcript lives in
 * the event log and the blob store, and each model call carries only the window
 * of the log it should read (`fromSeq`..`throughSeq`); large outputs, arguments
 * and texts travel by reference. A run continues as new when Temporal suggests
 * it, or at the limits in common/defaults.ts, carrying everything the next run
 * needs (`SessionCarry`). Runs started before this shape (no marker
 * {@link PATCH_CONTEXT_FROM_LOG} in their history) keep carrying the transcript.
 */
import { Operator, type OperatorCarry } from './operator';
import { SessionSandbox, type Emit, type SandboxCarry } from './sandbox-lifecycle';
import { SessionWebhooks } from './webhooks';
import {
  allHandlersFinished,
  CancellationScope,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Admission, CallModelInput, McpActivities, ModelActivities, StoreActivities } from '../common/activities';
import { CANCEL_SIGNAL, CLOSE_SIGNAL, DEFAULT_SYSTEM_PROMPT, MESSAGE_SIGNAL, STATUS_QUERY } from '../common/constants';
import {
  DEFAULT_IDLE_TIMEOUT_SEC,
  DEFAULT_MAX_OUTPUT_TOKENS,
  DEFAULT_MAX_STEPS,
  DEFAULT_STEPS_PER_RUN,
  MAX_RUN_HISTORY_BYTES,
  MAX_RUN_HISTORY_EVENTS,
} from '../common/defaults';
import type { SessionEvent } from '../common/events';
import { failureTypeOf } from '../common/failures';
import { faultFor, injectedResult } from '../common/inject';
import type { McpTool, SandboxMcpServer } from '../common/mcp';
import { sandboxLimits } from '../common/sandbox-spec';
import { STATUS_ATTRIBUTE } from '../common/search-attributes';
import { SESSION_TOOLS, toolTimeoutSec, validateToolCall, type ToolInput } from '../common/tools';
import type {
  ContextWindow,
  Message,
  ModelTurn,
  NetworkReport,
  SessionResult,
  SessionSpec,
  SessionState,
  TokenUsage,
  ToolCall,
  ToolResult,
} from '../common/types';

export const messageSignal = defineSignal<[string]>(MESSAGE_SIGNAL);
export const cancelSignal = defineSignal<[string?]>(CANCEL_SIGNAL);
export const closeSignal = defineSignal<[]>(CLOSE_SIGNAL);
export const statusQuery = defineQuery<SessionState>(STATUS_QUERY);

/** Marks runs whose model calls read the transcript from the event log (see the module comment). */
export const PATCH_CONTEXT_FROM_LOG = 'keel-context-from-event-log';
/** Marks runs that record their runtime contract (`session.contract`) after the first provision. */
export const PATCH_CONTRACT = 'keel-runtime-contract';
/** Marks runs with operator control: tenant admission, budgets, approval policies, fault injection (workflows/operator.ts). */
export const PATCH_OPERATOR = 'keel-operator-control';
/** Marks runs that record what the egress proxy refused as `network.refused` events (networked sessions). */
export const PATCH_NETWORK_EVENTS = 'keel-network-refused-events';
/** Marks runs that keep the `KeelStatus` search attribute current (sessions started with it: common/search-attributes.ts). */
export const PATCH_SEARCH_ATTRIBUTES = 'keel-search-attributes';
/** Marks runs that list their MCP servers' tools and offer them (sessions with `spec.mcp`; activities/mcp). */
export const PATCH_MCP = 'keel-mcp-tools';
/** Marks runs that start MCP servers inside their sandbox and offer their tools (sessions with `spec.mcpSandbox`). */
export const PATCH_MCP_SANDBOX = 'keel-mcp-sandbox';

/** What one workflow run hands the next when it continues as new. */
export interface SessionCarry {
  /** The run that takes over: 2 for the first continuation. */
  run: number;
  seq: number;
  step: number;
  toolCalls: number;
  usage: TokenUsage;
  /** Messages that arrived and were not yet shown to the model. */
  inbox: string[];
  window: ContextWindow;
  sandbox: SandboxCarry;
  /** `close` was asked for. */
  closing: boolean;
  /** A cancel that arrived while the run was handing over. */
  cancelReason?: string;
  /** Budgets, active time and remembered approvals (runs with operator control). */
  operator?: OperatorCarry;
  /** The tenant's admission, taken once per session. */
  admission?: Admission;
  /** The session's MCP tools, as listed when it started. */
  mcpTools?: McpTool[];
}

// Store work that belongs in history as plain activities: a fork's copy of another session's transcript
// (its result, the chain head, in history), and tenant charges (keyed by the activity: a retry charges once).
const { copyTranscript, chargeTenant } = proxyActivities<StoreActivities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 20 },
});

const { describeRuntime } = proxyLocalActivities<ModelActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10 },
});

const { callModel, readOutput } = proxyActivities<ModelActivities>({
  startToCloseTimeout: '5 minutes',
  // The activity beats every 5 s while the model works: a dead worker costs 30 s, not 5 minutes.
  heartbeatTimeout: '30s',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 8 },
});

// MCP servers run beside the session worker. Listing retries a little (a server that cannot start says why);
// a call's own timeout (KEEL_MCP_CALL_TIMEOUT_SEC, at most 240 s) is the worker's: its failures are error results.
const { listMcpTools } = proxyActivities<McpActivities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 3 },
});
const { callMcpTool } = proxyActivities<McpActivities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 5 },
});

// Events are written by a local activity: no extra round trip through the server per step; so is the
// tenant admission, a quick check in Postgres. Bounded like every retry: about 20 minutes of Postgres
// outage, then the session fails (and is torn down).
const { recordEvents, admitSession } = proxyLocalActivities<StoreActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 45 },
});

export async function agentSession(spec: SessionSpec, carry?: SessionCarry): Promise<SessionResult> {
  const fromLog = carry !== undefined || patched(PATCH_CONTEXT_FROM_LOG);
  const operated = fromLog && (carry?.operator !== undefined || patched(PATCH_OPERATOR));
  const sessionId = workflowInfo().workflowId;
  const maxSteps = spec.maxSteps ?? DEFAULT_MAX_STEPS;
  const state: SessionState = { status: 'running', step: carry?.step ?? 0, toolCalls: carry?.toolCalls ?? 0, run: carry?.run ?? 1 };
  const usage = carry?.usage ?? { inputTokens: 0, outputTokens: 0 };
  const inbox: string[] = [...(carry?.inbox ?? spec.messages ?? [])];
  // Runs from before the event-log transcript carry it here, whole.
  const messages: Message[] = [{ role: 'user', text: spec.task }];
  let window: ContextWindow = carry?.window ?? { fromSeq: 1, throughSeq: 0, dropped: 0 };
  let closing = carry?.closing ?? false;
  let continuing = false;
  let endReason: string | undefined;
  const runFirstStep = state.step;
  let summary: string | undefined;
  let error: string | undefined;
  let mcpTools: McpTool[] = carry?.mcpTools ?? [];

  let seq = carry?.seq ?? 0;
  let pending: SessionEvent[] = [];
  const emit: Emit = (type, data) => {
    const event = { seq: ++seq, type, data } as SessionEvent;
    pending.push(event);
    webhooks.observe(event);
  };
  const webhooks = new SessionWebhooks(sessionId, spec.webhook, emit);
  webhooks.tenantUrl = carry?.admission?.webhookUrl;
  // KeelStatus follows state.status, where the session started with it (a namespace that has the attribute).
  let shownStatus = workflowInfo().typedSearchAttributes.get(STATUS_ATTRIBUTE);
  const showStatus = () => {
    if (shownStatus === undefined || shownStatus === state.status || !patched(PATCH_SEARCH_ATTRIBUTES)) return;
    shownStatus = state.status;
    upsertSearchAttributes([{ key: STATUS_ATTRIBUTE, value: state.status }]);
  };
  const flush = async () => {
    showStatus();
    if (pending.length === 0) return;
    const events = pending;
    pending = [];
    await recordEvents({ sessionId, events });
  };

  const sandbox = new SessionSandbox(sessionId, spec.sandbox, emit, carry?.sandbox);
  sandbox.onRefused = (report) => recordRefused(report);
  const operator = operated ? new Operator({ spec, state, usage, emit, flush, sandbox, store: { chargeTenant } }, carry?.operator) : undefined;
  if (operator && carry?.admission) operator.admission = carry.admission;
  const maxOutputTokens = spec.model.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS;
  const loop = new CancellationScope();
  setHandler(statusQuery, () => ({
    ...state,
    ...(operator ? { spent: operator.spent(), ...(Object.keys(operator.budgets).length ? { budgets: { ...operator.budgets } } : {}) } : {}),
  }));
  operator?.listen();
  setHandler(messageSignal, (text) => {
    inbox.push(text);
  });
  setHandler(cancelSignal, (reason) => {
    state.cancelReason = reason || 'cancelled by user';
    loop.cancel();
  });
  setHandler(closeSignal, () => {
    closing = true;
  });

  if (!carry) {
    emit('session.started', {
      task: spec.task,
      model: `${spec.model.provider}:${spec.model.model}`,
      tenant: spec.tenant ?? 'default',
      maxSteps,
      workflowRunId: workflowInfo().runId,
      // Model calls read the task, the system prompt and a scripted model's script from here.
      ...(fromLog ? { spec } : {}),
    });
    await flush();
  } else {
    emit('session.continued', { run: state.run ?? 1, workflowRunId: workflowInfo().runId, step: state.step });
  }
  if (carry?.cancelReason) {
    state.cancelReason = carry.cancelReason;
    loop.cancel();
  }

  try {
    await loop.run(async () => {
      if (!carry && operator && !(await admit(operator))) return;
      if (!carry && spec.fork) await startFork(spec.fork);
      if (!carry && spec.workspace && !spec.fork) seedWorkspace(spec.workspace);
      if (!carry) await sandbox.provision('start');
      if (!carry && fromLog && spec.mcp?.length && patched(PATCH_MCP)) mcpTools = (await listMcpTools({ servers: spec.mcp })).tools;
      if (!carry && fromLog && spec.mcpSandbox && Object.keys(spec.mcpSandbox).length && patched(PATCH_MCP_SANDBOX)) {
        mcpTools = mcpTools.concat((await sandbox.listMcp(spec.mcpSandbox)).tools);
      }
      if (!carry && fromLog && patched(PATCH_CONTRACT)) await recordContract();

      for (;;) {
        for (const text of inbox.splice(0)) {
          if (!fromLog) messages.push({ role: 'user', text });
          emit('message.user', { text });
        }
        if (state.step >= maxSteps) {
          state.status = 'step_limit';
          return;
        }
        if (fromLog && state.step > runFirstStep && runIsFull()) {
          continuing = true;
          return;
        }
        await operator?.beforeModelCall(maxOutputTokens);
        state.step++;
        await flush();
        const turn = await callModel(modelInput());
        await operator?.afterModelCall(turn.usage, maxOutputTokens);
        usage.inputTokens += turn.usage.inputTokens;
        usage.outputTokens += turn.usage.outputTokens;
        if (turn.context) window = { fromSeq: turn.context.fromSeq, throughSeq: turn.context.throughSeq, dropped: window.dropped + turn.context.dropped };
        emit('model.call', {
          step: state.step,
          text: turn.text,
          ...(turn.textRef ? { textRef: turn.textRef } : {}),
          toolCalls: turn.toolCalls,
          ...(turn.droppedCalls ? { droppedCalls: turn.droppedCalls } : {}),
          finishReason: turn.finishReason,
          usage: turn.usage,
          durationMs: turn.durationMs,
          ...(turn.context ? { context: turn.context } : {}),
        });
        if (!fromLog) messages.push({ role: 'assistant', text: turn.text, toolCalls: turn.toolCalls });

        if (turn.toolCalls.length === 0) {
          // A message that arrived while the model was thinking gets its answer before we stop.
          if (inbox.length > 0) continue;
          summary = turn.text;
          if (spec.keepAlive && !closing && (await waitForMessage())) continue;
          state.status = 'completed';
          return;
        }

        const results: ToolResult[] = [];
        for (const call of turn.toolCalls) {
          results.push(await runOneTool(call, turn));
        }
        if (!fromLog) messages.push({ role: 'tool', results });
      }
    });
  } catch (err) {
    if (isCancellation(err)) {
      state.status = 'cancelled';
      state.cancelReason ??= 'workflow cancelled';
    } else {
      state.status = 'failed';
      error = errorMessage(err);
      emit('session.error', { message: error, type: failureTypeOf(err) });
    }
  }

  if (continuing && state.status === 'running') {
    // Everything pending is recorded, signal handlers have run, and the next run gets what they left.
    await CancellationScope.nonCancellable(async () => {
      await webhooks.settle();
      await flush();
    });
    await condition(allHandlersFinished);
    const next: SessionCarry = {
      run: (state.run ?? 1) + 1,
      seq,
      step: state.step,
      toolCalls: state.toolCalls,
      usage,
      inbox: inbox.splice(0),
      window,
      sandbox: sandbox.carry(),
      closing,
      ...(state.cancelReason ? { cancelReason: state.cancelReason } : {}),
      ...(operator ? { operator: operator.carry(), ...(operator.admission ? { admission: operator.admission } : {}) } : {}),
      ...(mcpTools.length ? { mcpTools } : {}),
    };
    return await continueAsNew<typeof agentSession>(withoutScript(spec), next);
  }

  // Teardown runs even when the session was cancelled.
  return await CancellationScope.nonCancellable(async () => {
    if (state.status === 'cancelled') emit('session.status', { status: 'cancelled', reason: state.cancelReason });
    await sandbox.teardown();
    const result: SessionResult = {
      sessionId,
      status: state.status,
      steps: state.step,
      toolCalls: state.toolCalls,
      summary,
      usage,
      error,
      ...(operator ? { spent: operator.spent() } : {}),
    };
    emit('session.ended', { ...result, reason: state.cancelReason ?? endReason, source: 'workflow' });
    await webhooks.settle();
    await flush();
    return result;
  });

  /**
   * Take a place under the tenant's cap on running sessions. Refused (false) when it is full,
   * unless `spec.queue`: then wait, holding nothing, and try again with backoff.
   */
  async function admit(op: Operator): Promise<boolean> {
    const tenant = spec.tenant ?? 'default';
    let a = await admitSession({ sessionId, tenant });
    webhooks.tenantUrl = a.webhookUrl;
    if (!a.admitted && !spec.queue) {
      emit('session.admission', { tenant, outcome: 'refused', running: a.running, max: a.maxRunning ?? 0 });
      state.status = 'refused';
      endReason = `tenant ${tenant} already runs its maximum of ${a.maxRunning} sessions; start it with --queue (spec.queue) to wait for a free slot`;
      return false;
    }
    if (!a.admitted) {
      emit('session.admission', { tenant, outcome: 'queued', running: a.running, max: a.maxRunning ?? 0 });
      state.status = 'waiting';
      state.waitingFor = 'admission';
      emit('session.status', { status: 'waiting', reason: `queued: tenant ${tenant} runs ${a.running} of ${a.maxRunning} sessions` });
      await flush();
      op.pauseClock();
      for (let delayMs = ADMISSION_RETRY_MIN_MS; !a.admitted; delayMs = Math.min(delayMs * 2, ADMISSION_RETRY_MAX_MS)) {
        await condition(() => false, delayMs);
        a = await admitSession({ sessionId, tenant });
      }
      op.resumeClock();
      delete state.waitingFor;
      state.status = 'running';
      emit('session.status', { status: 'running', reason: `admitted: tenant ${tenant} has a free slot` });
    }
    if (a.maxRunning !== undefined) emit('session.admission', { tenant, outcome: 'admitted', running: a.running, max: a.maxRunning });
    op.admission = a;
    return true;
  }

  /** A fork: the original's transcript up to the fork point becomes this session's, its files this sandbox's. */
  async function startFork(fork: NonNullable<SessionSpec['fork']>): Promise<void> {
    const copy = await copyTranscript({ sessionId, from: fork.from, throughSeq: fork.throughSeq, startSeq: seq + 1 });
    seq += copy.copied;
    state.step = copy.steps;
    state.toolCalls = copy.toolCalls;
    if (fork.snapshot) sandbox.lastSnapshot = fork.snapshot;
  }

  /**
   * A seeded session: its seed is its first snapshot, so the first provision restores from it as any
   * later restore would. No command of its own (the provision's input names the snapshot).
   */
  function seedWorkspace(seed: NonNullable<SessionSpec['workspace']>): void {
    sandbox.lastSnapshot = seed.snapshot;
    emit('sandbox.snapshot', {
      id: seed.snapshot,
      files: seed.files,
      bytes: seed.bytes,
      added: seed.files,
      modified: 0,
      removed: 0,
      changedBytes: seed.bytes,
      uploadedBytes: seed.uploadedBytes ?? 0,
      durationMs: 0,
      reason: 'seed', // what it was made from is in the spec (`session.started`)
    });
  }

  /** What this session runs on, recorded once, so a later re-run can say what changed. */
  async function recordContract(): Promise<void> {
    const runtime = await describeRuntime({ model: withoutScript(spec).model, ...(mcpTools.length ? { mcpTools } : {}) });
    const handle = sandbox.handle;
    emit('session.contract', {
      ...runtime,
      ...(workflowInfo().currentBuildId ? { workerBuildId: workflowInfo().currentBuildId } : {}),
      ...(handle?.runtime ? { sandbox: { image: handle.image, ...handle.runtime } } : {}),
    });
  }

  /** The model call's input: the event-log window, or (runs from before it) the whole transcript. */
  function modelInput(): CallModelInput {
    if (!fromLog) return { sessionId, model: spec.model, system: spec.systemPrompt ?? DEFAULT_SYSTEM_PROMPT, messages };
    const turn = state.step - 1 - (spec.fork?.modelTurnOffset ?? 0);
    return { sessionId, model: withoutScript(spec).model, turn, window: { ...window, throughSeq: seq }, ...(mcpTools.length ? { mcpTools } : {}) };
  }

  /** Whether this run's history has grown enough to hand over to a new run. */
  function runIsFull(): boolean {
    const info = workflowInfo();
    return (
      info.continueAsNewSuggested ||
      info.historyLength >= MAX_RUN_HISTORY_EVENTS ||
      info.historySize >= MAX_RUN_HISTORY_BYTES ||
      state.step - runFirstStep >= (spec.stepsPerRun ?? DEFAULT_STEPS_PER_RUN)
    );
  }

  /**
   * A kept-alive session between turns: wait durably for a message; after `idleSuspendSec` release
   * the container (the next tool call restores it). False when the session should end instead.
   */
  async function waitForMessage(): Promise<boolean> {
    state.status = 'waiting';
    state.waitingFor = 'message';
    emit('session.status', { status: 'waiting', reason: 'waiting for a message' });
    await flush();
    operator?.pauseClock();
    const idleSec = sandboxLimits(spec.sandbox).idleSuspendSec;
    const timeoutSec = spec.idleTimeoutSec ?? DEFAULT_IDLE_TIMEOUT_SEC;
    const woken = () => inbox.length > 0 || closing;
    const first = Math.min(idleSec, timeoutSec);
    let woke = first > 0 ? await condition(woken, first * 1000) : woken();
    if (!woke && timeoutSec > first) {
      await sandbox.suspend('waiting for a message');
      await flush();
      woke = await condition(woken, (timeoutSec - first) * 1000);
    }
    operator?.resumeClock();
    delete state.waitingFor;
    state.status = 'running';
    if (inbox.length > 0) {
      emit('session.status', { status: 'running', reason: 'a message arrived' });
      return true;
    }
    endReason = closing ? 'closed' : `no message for ${timeoutSec} s`;
    return false;
  }

  async function runOneTool(call: ToolCall, turn: ModelTurn): Promise<ToolResult> {
    await operator?.beforeToolCall();
    state.toolCalls++;
    state.lastTool = call.name;
    emit('tool.call', { step: state.step, callId: call.id, name: call.name, input: call.input, ...(call.inputRef ? { inputRef: call.inputRef } : {}) });
    await flush();
    let result: ToolResult;
    // An MCP tool's arguments are checked against its server's schema by the activity that runs it.
    const mcpTool = call.invalid ? undefined : mcpTools.find((t) => t.name === call.name);
    const checked = call.invalid
      ? ({ ok: false, ...call.invalid } as const)
      : call.inputRef || mcpTool
        ? ({ ok: true, name: call.name, input: call.input } as const) // validated whole by the model activity
        : validateToolCall(call.name, call.input);
    if (!checked.ok) {
      // Bad arguments are the model's mistake, not the session's: it gets an error result and goes on.
      result = { callId: call.id, name: call.name, ok: false, error: checked.error, output: checked.message };
    } else {
      try {
        // The policy first (a refused call is not run, nor faulted); then a deliberate fault, which never reaches the sandbox.
        const refused = operator ? await operator.gate(call, checked.input) : undefined;
        const fault = refused || !operator ? undefined : faultFor(spec.inject, checked.name, state.toolCalls);
        if (refused) result = refused;
        else if (fault) result = injectedResult(call.id, checked.name, fault);
        else if (mcpTool?.sandbox && sandboxServer(mcpTool)) {
          const run = { id: call.id, name: call.name, input: call.input, ...(call.inputRef ? { inputRef: call.inputRef } : {}) };
          result = await sandbox.runMcp(run, mcpTool, sandboxServer(mcpTool)!);
        } else if (mcpTool) {
          const run = { id: call.id, name: call.name, input: call.input, ...(call.inputRef ? { inputRef: call.inputRef } : {}) };
          result = await callMcpTool({ sessionId, call: run, tool: mcpTool });
        } else if (checked.name === 'sleep') result = await sleep(call.id, checked.input as ToolInput<'sleep'>);
        else if (SESSION_TOOLS.has(checked.name)) result = await readOutput({ sessionId, call: { id: call.id, name: checked.name, input: checked.input } });
        else {
          const run = { id: call.id, name: checked.name, input: checked.input, ...(call.inputRef ? { inputRef: call.inputRef } : {}) };
          result = await sandbox.run(run, toolTimeoutSec(checked.name, checked.input));
        }
      } catch (err) {
        // The audit trail pairs every tool.call with a result, even an interrupted one.
        const reason = isCancellation(err) ? 'Cancelled' : 'Failed';
        emit('tool.result', { step: state.step, callId: call.id, name: call.name, ok: false, error: reason, output: errorMessage(err) });
        throw err;
      }
    }
    if (turn.droppedCalls && call === turn.toolCalls[turn.toolCalls.length - 1]) {
      const made = turn.toolCalls.length + turn.droppedCalls;
      result = { ...result, output: `${result.output}\n[Keel: this turn made ${made} tool calls; only the first ${turn.toolCalls.length} ran, the other ${turn.droppedCalls} were dropped]` };
    }
    const { network, ...recorded } = result;
    emit('tool.result', { step: state.step, ...recorded });
    if (network) recordRefused(network, call.id);
    // The snapshot is for the audit trail, the refusals are events: neither is for the model.
    const { snapshot: _snapshot, ...forModel } = recorded;
    return forModel;
  }

  /** The spec of a sandbox MCP tool's server. */
  function sandboxServer(tool: McpTool): SandboxMcpServer | undefined {
    return spec.mcpSandbox?.[tool.server];
  }

  /** What the egress proxy refused, one event per host, port and reason; after call `callId`, or at a release. */
  function recordRefused(report: NetworkReport, callId?: string): void {
    if (!patched(PATCH_NETWORK_EVENTS)) return;
    report.refused.forEach((refusal, i) => {
      const last = i === report.refused.length - 1;
      emit('network.refused', { step: state.step, ...(callId ? { callId } : {}), ...refusal, ...(last && report.dropped ? { dropped: report.dropped } : {}) });
    });
  }

  /** The `sleep` tool: a durable timer. A long one releases the container until the next tool call. */
  async function sleep(callId: string, input: ToolInput<'sleep'>): Promise<ToolResult> {
    const idleSec = sandboxLimits(spec.sandbox).idleSuspendSec;
    if (input.seconds > idleSec) await sandbox.suspend(`sleep ${input.seconds}s${input.reason ? `: ${input.reason}` : ''}`);
    await flush();
    operator?.pauseClock();
    const woken = await condition(() => inbox.length > 0, `${input.seconds}s`);
    operator?.resumeClock();
    const output = woken ? 'Woke early: a user message arrived.' : `Slept ${input.seconds} s.`;
    return { callId, name: 'sleep', ok: true, output };
  }
}

/** The spec a new run carries: a scripted model's script stays in the `session.started` event, not in every run's input. */
function withoutScript(spec: SessionSpec): SessionSpec {
  if (!spec.model.script) return spec;
  const { script: _script, ...model } = spec.model;
  return { ...spec, model };
}

/** How often a queued session asks again for a place under its tenant's cap: 5 s, doubling to 5 minutes. */
const ADMISSION_RETRY_MIN_MS = 5_000;
const ADMISSION_RETRY_MAX_MS = 300_000;

function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error && cause.message && cause.message !== err.message
      ? `${err.message}: ${cause.message}`
      : err.message;
  }
  return String(err);
}
