/**
 * The agent session workflow: one durable loop of model turns and tool calls.
 *
 * Deterministic code only (no I/O, clock or randomness): everything with a side
 * effect is an activity. Events get their sequence numbers here, so a retried
 * write to Postgres is a no-op rather than a duplicate.
 */
import {
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  defineSignal,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { ModelActivities, SandboxActivities, StoreActivities } from '../common/activities';
import {
  CANCEL_SIGNAL,
  DEFAULT_MAX_STEPS,
  DEFAULT_SYSTEM_PROMPT,
  MESSAGE_SIGNAL,
  SANDBOX_QUEUE,
  STATUS_QUERY,
} from '../common/constants';
import { validateToolCall } from '../common/tools';
import type {
  EventType,
  Message,
  SandboxHandle,
  SessionEvent,
  SessionResult,
  SessionSpec,
  SessionState,
  ToolCall,
  ToolResult,
} from '../common/types';

export const messageSignal = defineSignal<[string]>(MESSAGE_SIGNAL);
export const cancelSignal = defineSignal<[string?]>(CANCEL_SIGNAL);
export const statusQuery = defineQuery<SessionState>(STATUS_QUERY);

const { callModel } = proxyActivities<ModelActivities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 8 },
});

// Events are written by a local activity: no extra round trip through the server per step.
const { recordEvents } = proxyLocalActivities<StoreActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '30s' },
});

const { provisionSandbox } = proxyActivities<SandboxActivities>({
  taskQueue: SANDBOX_QUEUE,
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 },
});

/** Sandbox activities bound to the queue of the host that holds the container. */
function hostActivities(handle: SandboxHandle, timeoutSec: number) {
  return proxyActivities<SandboxActivities>({
    taskQueue: handle.hostQueue,
    // The command's own timeout plus room for setup; a dead worker is noticed by the heartbeat.
    startToCloseTimeout: `${timeoutSec + 60}s`,
    heartbeatTimeout: '10s',
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 10 },
  });
}

const DEFAULT_TOOL_TIMEOUT_SEC = 120;

export async function agentSession(spec: SessionSpec): Promise<SessionResult> {
  const sessionId = workflowInfo().workflowId;
  const maxSteps = spec.maxSteps ?? DEFAULT_MAX_STEPS;
  const state: SessionState = { status: 'running', step: 0, toolCalls: 0 };
  const usage = { inputTokens: 0, outputTokens: 0 };
  const inbox: string[] = [];
  const messages: Message[] = [{ role: 'user', text: spec.task }];
  let summary: string | undefined;
  let error: string | undefined;
  let handle: SandboxHandle | undefined;

  let seq = 0;
  let pending: SessionEvent[] = [];
  const emit = (type: EventType, data: Record<string, unknown>) => {
    pending.push({ seq: ++seq, type, data });
  };
  const flush = async () => {
    if (pending.length === 0) return;
    const events = pending;
    pending = [];
    await recordEvents({ sessionId, events });
  };

  const loop = new CancellationScope();
  setHandler(statusQuery, () => ({ ...state }));
  setHandler(messageSignal, (text) => {
    inbox.push(text);
  });
  setHandler(cancelSignal, (reason) => {
    state.cancelReason = reason || 'cancelled by user';
    loop.cancel();
  });

  emit('session.started', {
    task: spec.task,
    model: `${spec.model.provider}:${spec.model.model}`,
    tenant: spec.tenant ?? 'default',
    maxSteps,
    workflowRunId: workflowInfo().runId,
  });
  await flush();

  try {
    await loop.run(async () => {
      handle = await provisionSandbox({ sessionId, spec: spec.sandbox });
      emit('sandbox.provisioned', { containerId: handle.containerId, hostId: handle.hostId, image: handle.image });

      for (;;) {
        for (const text of inbox.splice(0)) {
          messages.push({ role: 'user', text });
          emit('message.user', { text });
        }
        if (state.step >= maxSteps) {
          state.status = 'step_limit';
          return;
        }
        state.step++;
        await flush();
        const turn = await callModel({
          sessionId,
          model: spec.model,
          system: spec.systemPrompt ?? DEFAULT_SYSTEM_PROMPT,
          messages,
        });
        usage.inputTokens += turn.usage.inputTokens;
        usage.outputTokens += turn.usage.outputTokens;
        emit('model.call', {
          step: state.step,
          text: turn.text,
          toolCalls: turn.toolCalls,
          finishReason: turn.finishReason,
          usage: turn.usage,
          durationMs: turn.durationMs,
        });
        messages.push({ role: 'assistant', text: turn.text, toolCalls: turn.toolCalls });

        if (turn.toolCalls.length === 0) {
          // A message that arrived while the model was thinking gets its answer before we stop.
          if (inbox.length > 0) continue;
          summary = turn.text;
          state.status = 'completed';
          return;
        }

        const results: ToolResult[] = [];
        for (const call of turn.toolCalls) {
          results.push(await runOneTool(call));
        }
        messages.push({ role: 'tool', results });
      }
    });
  } catch (err) {
    if (isCancellation(err)) {
      state.status = 'cancelled';
      state.cancelReason ??= 'workflow cancelled';
    } else {
      state.status = 'failed';
      error = errorMessage(err);
      emit('session.error', { message: error, type: failureType(err) });
    }
  }

  // Teardown runs even when the session was cancelled.
  return await CancellationScope.nonCancellable(async () => {
    if (state.status === 'cancelled') emit('session.status', { status: 'cancelled', reason: state.cancelReason });
    if (handle) {
      try {
        const removed = await hostActivities(handle, 60).destroySandbox({ sessionId });
        emit('sandbox.removed', { containerId: handle.containerId, removed: removed.removed });
      } catch (err) {
        // The reaper removes what a dead host left behind; the session still ends.
        emit('session.error', { message: `sandbox teardown failed: ${errorMessage(err)}` });
      }
    }
    const result: SessionResult = {
      sessionId,
      status: state.status,
      steps: state.step,
      toolCalls: state.toolCalls,
      summary,
      usage,
      error,
    };
    emit('session.ended', { ...result, reason: state.cancelReason });
    await flush();
    return result;
  });

  async function runOneTool(call: ToolCall): Promise<ToolResult> {
    state.toolCalls++;
    state.lastTool = call.name;
    emit('tool.call', { step: state.step, callId: call.id, name: call.name, input: call.input });
    await flush();
    const checked = validateToolCall(call.name, call.input);
    let result: ToolResult;
    if (!checked.ok) {
      // Bad arguments are the model's mistake, not the session's: it gets an error result and goes on.
      result = { callId: call.id, name: call.name, ok: false, error: checked.error, output: checked.message };
    } else {
      const timeoutSec =
        checked.name === 'shell' ? ((checked.input as { timeoutSec?: number }).timeoutSec ?? DEFAULT_TOOL_TIMEOUT_SEC) : 60;
      try {
        result = await hostActivities(handle!, timeoutSec).runTool({
          sessionId,
          handle: handle!,
          call: { id: call.id, name: checked.name, input: checked.input },
        });
      } catch (err) {
        // The audit trail pairs every tool.call with a result, even an interrupted one.
        const reason = isCancellation(err) ? 'Cancelled' : 'Failed';
        emit('tool.result', { step: state.step, callId: call.id, name: call.name, ok: false, error: reason, output: errorMessage(err) });
        throw err;
      }
    }
    emit('tool.result', { step: state.step, ...result });
    return result;
  }
}

/** The `type` of the ApplicationFailure behind an error (activity failures wrap it as their cause). */
function failureType(err: unknown): string | undefined {
  for (let e = err; e; e = (e as { cause?: unknown }).cause) {
    if (e instanceof ApplicationFailure) return e.type ?? undefined;
  }
  return undefined;
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause;
    return cause instanceof Error && cause.message && cause.message !== err.message
      ? `${err.message}: ${cause.message}`
      : err.message;
  }
  return String(err);
}
