import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { modelContract } from '../../audit/contract';
import { stepCountIs, streamText, type ModelMessage } from 'ai';
import { classifyBlobError, ContentCache, fitsInline, preview, putContent, type BlobStore } from '../../blobs';
import type { CallModelInput, ModelActivities } from '../../common/activities';
import { DEFAULT_SYSTEM_PROMPT } from '../../common/constants';
import type { McpTool } from '../../common/mcp';
import { DEFAULT_MAX_OUTPUT_TOKENS, DEFAULT_OUTPUT_LIMIT } from '../../common/defaults';
import { failure, ModelFailure } from '../../common/failures';
import { capOutput, validateToolCall } from '../../common/tools';
import type { Message, ModelSpec, ModelTurn, RuntimeContract, SessionSpec, ToolCall, ToolResult } from '../../common/types';
import { costOf, priceOf } from '../../common/prices';
import { DELTAS_CHANNEL, firstEvent, getEvents, toolResultOf, type Sql } from '../../store';
import { modelCallSeconds, modelCostUsd, modelTokens, outcomeOf } from '../../telemetry/metrics';
import { inSpan } from '../../telemetry/spans';
import { withStoreErrors } from '../store/errors';
import { prepareCalls } from './calls';
import { secretsOf, withModelDefaults, type ModelConfig } from './config';
import { classifyModelError } from './errors';
import { DeltaPublisher } from './deltas';
import { guardedFetch } from './response-guard';
import { toModelMessages } from './messages';
import { languageModelFor } from './providers';
import { buildRequest, requestSha } from './request';
import { sessionTools } from './tools';
import { transcriptOf } from './transcript';

/** Dependencies of the model activities. */
export interface ModelActivityDeps {
  /** Credentials and endpoints, usually from {@link resolveModelConfig}. */
  config: ModelConfig;
  /** The event log: the transcript is read from it. */
  sql: Sql;
  /** Where large tool outputs, arguments and texts are kept; the sandbox hosts must share it. */
  blobs: BlobStore;
  /** Most characters of one tool output the model sees. @default DEFAULT_OUTPUT_LIMIT */
  outputLimit?: number;
  /**
   * Publish the text of running model calls as it is generated (NOTIFY `keel_deltas` on `sql`),
   * for live views; the `model.call` event stays the record. @default true
   */
  publishDeltas?: boolean;
}

/** Specs of recently seen sessions (read once from their `session.started` event). */
const SPEC_CACHE_SIZE = 500;
/** A model turn's text beyond this stays inline only when it ends the turn (a summary, an answer). */
const FINAL_TEXT_INLINE = 32 * 1024;

/** A heartbeat every few seconds while a model call runs, so a dead worker is noticed in `heartbeatTimeout`, not in 5 minutes. */
const HEARTBEAT_MS = 5000;

function keepBeating(): () => void {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return () => undefined;
  }
  // No beat at the start: most calls end before the first interval, and each beat is a server round trip.
  const timer = setInterval(() => ctx.heartbeat(), HEARTBEAT_MS);
  return () => clearInterval(timer);
}

/** The activity's attempt (1 first), or 1 outside an activity. */
function activityAttempt(): number {
  try {
    return Context.current().info.attempt;
  } catch {
    return 1;
  }
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
 * Invalid tool calls, as verified against ai@6.0.325 (generate-text/parse-tool-call.ts,
 * which streamText's run-tools-transformation calls as generateText does):
 * - streamText does NOT throw NoSuchToolError or InvalidToolInputError for a
 *   tool call the model emits. parseToolCall catches both (and a failed
 *   experimental_repairToolCall) and returns the call with `invalid: true,
 *   dynamic: true, error`, toolName as the model sent it, and input = the
 *   parsed JSON when it parses, otherwise the raw argument string. It is listed
 *   in result.toolCalls, and a `tool-error` part is added to result.content.
 * - Because no tool has `execute`, nothing runs and, with stopWhen
 *   stepCountIs(1), there is exactly one model request per activity.
 * - We pass no repair function: the workflow answers a bad call with an
 *   error result, which is what lets the model repair it itself.
 * - Streamed, every provider sends tool input as text in pieces (Anthropic's
 *   `input_json_delta`), so a call cut off mid-arguments is invalid JSON there too.
 */
function toToolCalls(calls: ReadonlyArray<{ toolCallId: string; toolName: string; input: unknown }>): ToolCall[] {
  return calls.map((c) => ({ id: c.toolCallId, name: c.toolName, input: c.input }));
}

/** Model activities for the session worker. */
export function createModelActivities({ config, sql, blobs, outputLimit = DEFAULT_OUTPUT_LIMIT, publishDeltas = true }: ModelActivityDeps) {
  const resolved = withModelDefaults(config);
  const secrets = secretsOf(resolved);
  const cache = new ContentCache();
  const specs = new Map<string, SessionSpec>();

  /** The session's spec as `session.started` recorded it (task, system prompt, a scripted model's script). */
  async function specOf(sessionId: string): Promise<SessionSpec> {
    const hit = specs.get(sessionId);
    if (hit) return hit;
    const started = await withStoreErrors(() => firstEvent(sql, sessionId, 'session.started'));
    const spec = started?.data.spec;
    if (!spec) throw failure(ModelFailure.BadRequest, `session ${sessionId} has no recorded spec (no session.started event with one)`);
    if (specs.size >= SPEC_CACHE_SIZE) specs.delete(specs.keys().next().value as string);
    specs.set(sessionId, spec);
    return spec;
  }

  /** Content that would not fit in workflow history goes to the blob store; the turn carries a preview and the reference. */
  async function slim(text: string | undefined, final: boolean): Promise<Pick<ModelTurn, 'text' | 'textRef'>> {
    if (!text) return {};
    if (fitsInline(text) || (final && text.length <= FINAL_TEXT_INLINE)) return { text };
    return { text: preview(text), textRef: await putContent(blobs, text) };
  }

  /** A stored output's whole text (legacy transcripts carry references since outputs moved to the blob store). */
  async function outputOf(r: ToolResult): Promise<string> {
    return r.outputRef ? cache.text(blobs, r.outputRef) : r.output;
  }

  /** Whole messages for a legacy call: stored outputs fetched and capped as the model always saw them. */
  async function legacyMessages(messages: Message[]): Promise<ModelMessage[]> {
    const whole: Message[] = [];
    for (const m of messages) {
      if (m.role !== 'tool') whole.push(m);
      else whole.push({ role: 'tool', results: await Promise.all(m.results.map(async (r) => ({ ...r, output: capOutput(await outputOf(r), outputLimit) }))) });
    }
    return toModelMessages(whole);
  }

  return {
    /**
     * One model turn. For sessions built from the event log: read the window of the transcript,
     * fit it into the model's context budget, call the model, and return its text and tool calls
     * (large ones by reference) with a report of how the request was built. Tools are offered but
     * never executed here; the workflow runs them.
     * @throws ApplicationFailure `Model.RateLimit` | `Model.Unavailable` | `Store.Unavailable` | `Blob.Unavailable` (retryable),
     *   `Model.Auth` | `Model.BadRequest` | `Model.BadResponse` | `Model.NotConfigured` | `Model.ScriptExhausted` | `Blob.Missing` (non-retryable).
     */
    async callModel(input: CallModelInput): Promise<ModelTurn> {
      const { sessionId } = input;
      const label = `${input.model.provider}:${input.model.model}`;
      const stop = keepBeating();
      try {
        const spec = input.messages ? undefined : await specOf(sessionId);
        const model: ModelSpec = spec && !input.model.script && spec.model.script ? { ...input.model, script: spec.model.script } : input.model;
        const maxOutputTokens = model.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS;
        const system = input.system ?? spec?.systemPrompt ?? DEFAULT_SYSTEM_PROMPT;
        const tools = sessionTools(input.mcpTools);

        let messages: ModelMessage[];
        let built: ReturnType<typeof buildRequest> | undefined;
        if (input.messages) {
          messages = await legacyMessages(input.messages);
        } else {
          const window = input.window ?? { fromSeq: 0, throughSeq: 2147483647, dropped: 0 };
          const events = await withStoreErrors(() =>
            getEvents(sql, sessionId, { afterSeq: window.fromSeq - 1, throughSeq: window.throughSeq, types: ['message.user', 'model.call', 'tool.result'] }),
          );
          const entries = await transcriptOf(events, { blobs, cache });
          built = buildRequest({ task: spec?.task ?? '', system, tools, model: { ...model, maxOutputTokens }, entries, droppedBefore: window.dropped, outputLimit });
          messages = built.messages;
        }

        const bodies: string[] = [];
        const fetchSpy: typeof globalThis.fetch = (url, init) => {
          if (typeof init?.body === 'string') bodies.push(createHash('sha256').update(init.body).digest('hex'));
          return globalThis.fetch(url, init);
        };
        const fetch = guardedFetch(fetchSpy, label);
        const languageModel = languageModelFor(model, resolved, { fetch, ...(input.turn !== undefined ? { turn: input.turn } : {}) });
        const timeout = AbortSignal.timeout(resolved.requestTimeoutMs);
        const cancel = activitySignal();
        const abortSignal = cancel ? AbortSignal.any([cancel, timeout]) : timeout;
        const started = performance.now();
        const labels = { provider: model.provider, model: model.model };
        // Deltas name the step the workflow will record the turn under (its `state.step`: model turns
        // so far, plus a fork's inherited ones, plus this one). The legacy path has no turn count.
        const deltas =
          publishDeltas && input.turn !== undefined && input.window
            ? new DeltaPublisher((payload) => sql.notify(DELTAS_CHANNEL, payload), {
                sessionId,
                step: input.turn + 1 + (spec?.fork?.modelTurnOffset ?? 0),
                afterSeq: input.window.throughSeq,
                attempt: activityAttempt(),
              })
            : undefined;
        let result: { text: string; toolCalls: Array<{ toolCallId: string; toolName: string; input: unknown }>; finishReason: string; usage: { inputTokens: number | undefined; outputTokens: number | undefined } };
        try {
          result = await inSpan(`model ${label}`, { 'keel.session_id': sessionId, 'keel.model': label }, async () => {
            const stream = streamText({
              model: languageModel,
              system,
              messages,
              tools,
              stopWhen: stepCountIs(1),
              maxRetries: 0, // Temporal owns retries, with backoff and visibility.
              maxOutputTokens,
              abortSignal,
              onError: () => undefined, // the error part below is thrown; the default would print it
            });
            for await (const part of stream.fullStream) {
              if (part.type === 'text-delta') deltas?.push(part.text);
              else if (part.type === 'error') throw part.error;
              else if (part.type === 'abort') throw abortSignal.reason ?? new Error('model call aborted');
            }
            await deltas?.flush();
            const [text, toolCalls, finishReason, usage] = await Promise.all([stream.text, stream.toolCalls, stream.finishReason, stream.usage]);
            return { text, toolCalls, finishReason, usage };
          });
        } catch (err) {
          void deltas?.flush();
          // Cancellation: let the abort through untouched so Temporal reports the activity as cancelled.
          if (cancel?.aborted) {
            modelCallSeconds.observe({ ...labels, outcome: 'cancelled' }, (performance.now() - started) / 1000);
            throw err;
          }
          const failed = classifyModelError(err, { label, secrets, ...(timeout.aborted ? { timedOutAfterMs: resolved.requestTimeoutMs } : {}) });
          modelCallSeconds.observe({ ...labels, outcome: outcomeOf(failed) }, (performance.now() - started) / 1000);
          throw failed;
        }
        const durationMs = Math.round(performance.now() - started);
        const usage = { inputTokens: result.usage.inputTokens ?? 0, outputTokens: result.usage.outputTokens ?? 0 };
        modelCallSeconds.observe({ ...labels, outcome: 'ok' }, durationMs / 1000);
        modelTokens.inc({ ...labels, kind: 'input' }, usage.inputTokens);
        modelTokens.inc({ ...labels, kind: 'output' }, usage.outputTokens);
        const price = priceOf(model);
        if (price) modelCostUsd.inc(labels, costOf(usage, price));
        if (!built) {
          return { ...(result.text ? { text: result.text } : {}), toolCalls: toToolCalls(result.toolCalls), finishReason: result.finishReason, usage, durationMs };
        }
        const { calls, dropped } = await prepareCalls(toToolCalls(result.toolCalls), blobs, input.mcpTools);
        const w = built.window;
        const fromSeq = w.entries.length > 0 ? w.fromSeq : (input.window?.fromSeq ?? 0);
        return {
          ...(await slim(result.text, calls.length === 0)),
          toolCalls: calls,
          ...(dropped > 0 ? { droppedCalls: dropped } : {}),
          finishReason: result.finishReason,
          usage,
          durationMs,
          context: {
            fromSeq,
            throughSeq: input.window?.throughSeq ?? 0,
            estimatedTokens: built.estimatedTokens,
            budgetTokens: built.budgetTokens,
            elided: w.elided,
            dropped: w.dropped,
            requestSha: requestSha({ model: label, system, messages, tools, maxOutputTokens }),
            ...(bodies.length > 0 ? { bodySha: bodies[bodies.length - 1] } : {}),
          },
        };
      } catch (err) {
        throw classifyBlobError(err) ?? err;
      } finally {
        stop();
      }
    },

    /**
     * The `read_output` tool: characters `offset`..`offset + limit` of an earlier call's output, as
     * stored (whole, up to the storage cap), so nothing elided from the conversation is lost.
     */
    async readOutput({ sessionId, call }: { sessionId: string; call: ToolCall }): Promise<ToolResult> {
      const base = { callId: call.id, name: call.name };
      const checked = validateToolCall(call.name, call.input);
      if (!checked.ok || checked.name !== 'read_output') return { ...base, ok: false, error: 'InvalidArguments', output: checked.ok ? 'not a read_output call' : checked.message };
      const { callId, offset = 0, limit = outputLimit } = checked.input as { callId: string; offset?: number; limit?: number };
      try {
        const found = await withStoreErrors(() => toolResultOf(sql, sessionId, callId));
        if (!found) return { ...base, ok: false, error: 'NotFound', output: `No tool call with id "${callId}" in this session.` };
        const whole = await outputOf(found.data);
        const end = Math.min(whole.length, offset + Math.min(limit, outputLimit));
        const part = whole.slice(offset, end);
        const note = end < whole.length || offset > 0 ? `\n[characters ${offset}-${end} of ${whole.length}${end < whole.length ? `; read on with offset ${end}` : ''}]` : '';
        const output = `${part}${note}` || '(empty output)';
        if (fitsInline(output)) return { ...base, ok: true, output };
        return { ...base, ok: true, output: preview(output), outputRef: await putContent(blobs, output) };
      } catch (err) {
        throw classifyBlobError(err) ?? err;
      }
    },

    /** The model's settings and every tool offered to it, each with the sha256 of its JSON Schema. */
    async describeRuntime({ model, mcpTools }: { model: ModelSpec; mcpTools?: McpTool[] }): Promise<Omit<RuntimeContract, 'sandbox' | 'workerBuildId'>> {
      return modelContract(model, mcpTools);
    },
  } satisfies ModelActivities;
}
