import { Context } from '@temporalio/activity';
import { generateText, stepCountIs } from 'ai';
import type { ModelActivities } from '../../common/activities';
import { DEFAULT_MAX_OUTPUT_TOKENS } from '../../common/defaults';
import type { Message, ModelSpec, ModelTurn, ToolCall } from '../../common/types';
import { secretsOf, withModelDefaults, type ModelConfig } from './config';
import { classifyModelError } from './errors';
import { toModelMessages } from './messages';
import { languageModelFor } from './providers';
import { modelTools } from './tools';

/** Dependencies of the model activities. */
export interface ModelActivityDeps {
  /** Credentials and endpoints, usually from {@link resolveModelConfig}. */
  config: ModelConfig;
}

/** The activity's cancellation signal, or undefined when called outside an activity (tests, scripts). */
function activitySignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

/*
 * Invalid tool calls, as verified against ai@6.0.325 (generate-text/parse-tool-call.ts
 * and test/unit/model-activity.test.ts):
 * - generateText does NOT throw NoSuchToolError or InvalidToolInputError for a
 *   tool call the model emits. parseToolCall catches both (and a failed
 *   experimental_repairToolCall) and returns the call with `invalid: true,
 *   dynamic: true, error`, toolName as the model sent it, and input = the
 *   parsed JSON when it parses, otherwise the raw argument string. It is listed
 *   in result.toolCalls, and a `tool-error` part is added to result.content.
 * - Because no tool has `execute`, nothing runs and, with stopWhen
 *   stepCountIs(1), there is exactly one model request per activity.
 * - We pass no repair function: the workflow answers a bad call with an
 *   error result, which is what lets the model repair it itself.
 * - Anthropic's non-streaming API returns tool input as a JSON object, so
 *   there "invalid JSON" cannot happen; a non-object input arrives as a value.
 */
function toToolCalls(calls: ReadonlyArray<{ toolCallId: string; toolName: string; input: unknown }>): ToolCall[] {
  return calls.map((c) => ({ id: c.toolCallId, name: c.toolName, input: c.input }));
}

/** Model activities for the session worker. */
export function createModelActivities({ config }: ModelActivityDeps) {
  const resolved = withModelDefaults(config);
  const secrets = secretsOf(resolved);
  return {
    /**
     * One model turn: the transcript so far in, text and tool calls out. Tools
     * are offered but never executed here; the workflow validates and runs them.
     * @throws ApplicationFailure `Model.RateLimit` | `Model.Unavailable` (retryable),
     *   `Model.Auth` | `Model.BadRequest` | `Model.NotConfigured` | `Model.ScriptExhausted` (non-retryable).
     */
    async callModel({
      sessionId,
      model,
      system,
      messages,
    }: {
      sessionId: string;
      model: ModelSpec;
      system: string;
      messages: Message[];
    }): Promise<ModelTurn> {
      const label = `${model.provider}:${model.model}`;
      void sessionId; // part of the contract for logging/metrics; nothing to send to the provider
      const languageModel = languageModelFor(model, resolved);
      const timeout = AbortSignal.timeout(resolved.requestTimeoutMs);
      const cancel = activitySignal();
      const abortSignal = cancel ? AbortSignal.any([cancel, timeout]) : timeout;
      const started = performance.now();
      try {
        const result = await generateText({
          model: languageModel,
          system,
          messages: toModelMessages(messages),
          tools: modelTools(),
          stopWhen: stepCountIs(1),
          maxRetries: 0, // Temporal owns retries, with backoff and visibility.
          maxOutputTokens: model.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS,
          abortSignal,
        });
        return {
          ...(result.text ? { text: result.text } : {}),
          toolCalls: toToolCalls(result.toolCalls),
          finishReason: result.finishReason,
          usage: { inputTokens: result.usage.inputTokens ?? 0, outputTokens: result.usage.outputTokens ?? 0 },
          durationMs: Math.round(performance.now() - started),
        };
      } catch (err) {
        // Cancellation: let the abort through untouched so Temporal reports the activity as cancelled.
        if (cancel?.aborted) throw err;
        throw classifyModelError(err, {
          label,
          secrets,
          ...(timeout.aborted ? { timedOutAfterMs: resolved.requestTimeoutMs } : {}),
        });
      }
    },
  } satisfies ModelActivities;
}
