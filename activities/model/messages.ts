import type { ModelMessage, ToolResultPart } from 'ai';
import type { Message, ToolResult } from '../../common/types';

/** Stands in for an assistant turn that said nothing and called nothing (providers reject empty content). */
export const EMPTY_ASSISTANT_TEXT = '(no response)';
/** Stands in for a tool result with empty output (some providers reject empty tool results). */
export const EMPTY_TOOL_OUTPUT = '(no output)';

/**
 * A tool call's input as providers accept it back in history. Anthropic requires
 * `tool_use.input` to be a JSON object, but a model can emit unparsable or
 * non-object arguments (kept raw in the transcript so the workflow can explain
 * the error): those are wrapped as `{ invalid_arguments: "<raw>" }`.
 */
export function historyToolInput(input: unknown): Record<string, unknown> {
  if (input !== null && typeof input === 'object' && !Array.isArray(input)) return input as Record<string, unknown>;
  return { invalid_arguments: typeof input === 'string' ? input : JSON.stringify(input) ?? String(input) };
}

function toolResultPart(r: ToolResult): ToolResultPart {
  const value = r.output.length > 0 ? r.output : EMPTY_TOOL_OUTPUT;
  // error-text lets providers flag the failure (Anthropic sets is_error: true).
  return { type: 'tool-result', toolCallId: r.callId, toolName: r.name, output: r.ok ? { type: 'text', value } : { type: 'error-text', value } };
}

/** Convert Keel's transcript to AI SDK messages. Pure; the system prompt is passed separately. */
export function toModelMessages(messages: readonly Message[]): ModelMessage[] {
  return messages.map((m): ModelMessage => {
    switch (m.role) {
      case 'user':
        return { role: 'user', content: m.text };
      case 'assistant': {
        const content: Exclude<Extract<ModelMessage, { role: 'assistant' }>['content'], string> = [];
        if (m.text) content.push({ type: 'text', text: m.text });
        for (const c of m.toolCalls) {
          content.push({ type: 'tool-call', toolCallId: c.id, toolName: c.name, input: historyToolInput(c.input) });
        }
        if (content.length === 0) content.push({ type: 'text', text: EMPTY_ASSISTANT_TEXT });
        return { role: 'assistant', content };
      }
      case 'tool':
        return { role: 'tool', content: m.results.map(toolResultPart) };
    }
  });
}
