/**
 * The agent session workflow: one durable loop of model turns and tool calls.
 *
 * Deterministic code only (no I/O, clock or randomness): everything with a side
 * effect is an activity. Events get their sequence numbers here, so a retried
 * write to Postgres is a no-op rather than a duplicate.
 */
import { SessionSandbox, type Emit } from './sandbox-lifecycle';
import {
  CancellationScope,
  condition,
  defineQuery,
  defineSignal,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { ModelActivities, StoreActivities } from '../common/activities';
import { CANCEL_SIGNAL, DEFAULT_SYSTEM_PROMPT, MESSAGE_SIGNAL, STATUS_QUERY } from '../common/constants';
import { DEFAULT_MAX_STEPS } from '../common/defaults';
import type { SessionEvent } from '../common/events';
import { failureTypeOf } from '../common/failures';
import { sandboxLimits } from '../common/sandbox-spec';
import { toolTimeoutSec, validateToolCall, type ToolInput } from '../common/tools';
import type { Message, SessionResult, SessionSpec, SessionState, ToolCall, ToolResult } from '../common/types';

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

export async function agentSession(spec: SessionSpec): Promise<SessionResult> {
  const sessionId = workflowInfo().workflowId;
  const maxSteps = spec.maxSteps ?? DEFAULT_MAX_STEPS;
  const state: SessionState = { status: 'running', step: 0, toolCalls: 0 };
  const usage = { inputTokens: 0, outputTokens: 0 };
  const inbox: string[] = [];
  const messages: Message[] = [{ role: 'user', text: spec.task }];
  let summary: string | undefined;
  let error: string | undefined;

  let seq = 0;
  let pending: SessionEvent[] = [];
  const emit: Emit = (type, data) => {
    pending.push({ seq: ++seq, type, data } as SessionEvent);
  };
  const flush = async () => {
    if (pending.length === 0) return;
    const events = pending;
    pending = [];
    await recordEvents({ sessionId, events });
  };

  const sandbox = new SessionSandbox(sessionId, spec.sandbox, emit);
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
      await sandbox.provision('start');

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
      emit('session.error', { message: error, type: failureTypeOf(err) });
    }
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
      try {
        result =
          checked.name === 'sleep'
            ? await sleep(call.id, checked.input as ToolInput<'sleep'>)
            : await sandbox.run({ id: call.id, name: checked.name, input: checked.input }, toolTimeoutSec(checked.name, checked.input));
      } catch (err) {
        // The audit trail pairs every tool.call with a result, even an interrupted one.
        const reason = isCancellation(err) ? 'Cancelled' : 'Failed';
        emit('tool.result', { step: state.step, callId: call.id, name: call.name, ok: false, error: reason, output: errorMessage(err) });
        throw err;
      }
    }
    emit('tool.result', { step: state.step, ...result });
    // The snapshot is for the audit trail, not for the model.
    const { snapshot: _snapshot, ...forModel } = result;
    return forModel;
  }

  /** The `sleep` tool: a durable timer. A long one releases the container until the next tool call. */
  async function sleep(callId: string, input: ToolInput<'sleep'>): Promise<ToolResult> {
    const idleSec = sandboxLimits(spec.sandbox).idleSuspendSec;
    if (input.seconds > idleSec) await sandbox.suspend(`sleep ${input.seconds}s${input.reason ? `: ${input.reason}` : ''}`);
    await flush();
    const woken = await condition(() => inbox.length > 0, `${input.seconds}s`);
    const output = woken ? 'Woke early: a user message arrived.' : `Slept ${input.seconds} s.`;
    return { callId, name: 'sleep', ok: true, output };
  }
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
