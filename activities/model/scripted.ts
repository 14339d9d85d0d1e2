import type {
  LanguageModelV3,
  LanguageModelV3CallOptions,
  LanguageModelV3Content,
  LanguageModelV3GenerateResult,
  LanguageModelV3StreamPart,
  LanguageModelV3StreamResult,
} from '@ai-sdk/provider';
import { failure, ModelFailure } from '../../common/failures';
import type { ScriptTurn } from '../../common/types';

const tokens = (chars: number) => Math.max(1, Math.ceil(chars / 4));

/**
 * A language model that plays a fixed script, for demos and tests. It is a
 * real AI SDK `LanguageModelV3`, so it goes through the same `streamText`
 * path (tool-call parsing, usage, finish reason) as the hosted providers.
 *
 * The turn played is given by the caller (the session's model-turn count), or else the
 * number of assistant messages in the prompt, so a retried or replayed call gets the same
 * answer (no hidden state).
 * A tool call whose `input` is a string is sent as raw argument text, so a
 * script can play a model that emits malformed JSON; any other input is
 * JSON-encoded.
 */
export class ScriptedLanguageModel implements LanguageModelV3 {
  readonly specificationVersion = 'v3' as const;
  readonly provider = 'keel.scripted';
  readonly supportedUrls: Record<string, RegExp[]> = {};

  constructor(
    readonly modelId: string,
    private readonly script: readonly ScriptTurn[],
    /** The turn to play; by default the number of assistant messages in the prompt (a window may hold fewer). */
    private readonly turn?: number,
  ) {}

  async doGenerate(options: LanguageModelV3CallOptions): Promise<LanguageModelV3GenerateResult> {
    const turn = this.turn ?? options.prompt.filter((m) => m.role === 'assistant').length;
    const step = this.script[turn];
    if (!step) {
      throw failure(ModelFailure.ScriptExhausted, `Scripted model ran out of turns at turn ${turn} (the script has ${this.script.length})`);
    }
    const content: LanguageModelV3Content[] = [];
    if (step.text) content.push({ type: 'text', text: step.text });
    (step.toolCalls ?? []).forEach((c, i) => {
      const input = typeof c.input === 'string' ? c.input : JSON.stringify(c.input ?? {});
      content.push({ type: 'tool-call', toolCallId: `call_${turn}_${i}`, toolName: c.name, input });
    });
    const outChars = (step.text ?? '').length + content.reduce((n, p) => n + (p.type === 'tool-call' ? p.input.length : 0), 0);
    const inTokens = tokens(JSON.stringify(options.prompt).length);
    const outTokens = tokens(outChars);
    const hasCalls = (step.toolCalls?.length ?? 0) > 0;
    return {
      content,
      finishReason: { unified: hasCalls ? 'tool-calls' : 'stop', raw: hasCalls ? 'tool_calls' : 'stop' },
      usage: {
        inputTokens: { total: inTokens, noCache: inTokens, cacheRead: undefined, cacheWrite: undefined },
        outputTokens: { total: outTokens, text: outTokens, reasoning: undefined },
      },
      warnings: [],
    };
  }

  /** The same turn as a stream: its text in word-sized deltas (live views show them), then its calls. */
  async doStream(options: LanguageModelV3CallOptions): Promise<LanguageModelV3StreamResult> {
    const { content, finishReason, usage } = await this.doGenerate(options);
    const parts: LanguageModelV3StreamPart[] = [{ type: 'stream-start', warnings: [] }];
    for (const [i, c] of content.entries()) {
      if (c.type === 'text') {
        parts.push({ type: 'text-start', id: `t${i}` });
        for (const piece of c.text.match(/\S*\s*/g) ?? []) if (piece) parts.push({ type: 'text-delta', id: `t${i}`, delta: piece });
        parts.push({ type: 'text-end', id: `t${i}` });
      } else if (c.type === 'tool-call') parts.push(c);
    }
    parts.push({ type: 'finish', finishReason, usage });
    return {
      stream: new ReadableStream<LanguageModelV3StreamPart>({
        start(controller) {
          for (const p of parts) controller.enqueue(p);
          controller.close();
        },
      }),
    };
  }
}
