/**
 * Building one model request from the event log: the pinned task, the window
 * of turns that fits the context budget (common/context.ts), and a hash of the
 * request so an auditor can tell exactly what the model was sent.
 */
import { createHash } from 'node:crypto';
import type { ModelMessage, ToolSet } from 'ai';
import { canonicalJson } from '../../common/canonical-json';
import { contextWindowOf, estimateTokens, fitWindow, MIN_CONTEXT_BUDGET, type FittedWindow, type TranscriptEntry } from '../../common/context';
import type { Message, ToolResult } from '../../common/types';
import { toModelMessages } from './messages';

/** Tokens every message costs beyond its content, and each tool definition beyond its schema. */
const FIXED_OVERHEAD_TOKENS = 64;

export interface BuiltRequest {
  messages: ModelMessage[];
  window: FittedWindow;
  budgetTokens: number;
  /** Estimated tokens of the whole request: system, tools, task and window. */
  estimatedTokens: number;
}

/** The note a model gets when earlier turns no longer fit. */
function droppedNote(dropped: number): string {
  return (
    `\n\n[Keel: ${dropped} earlier turn${dropped === 1 ? ' is' : 's are'} no longer shown, to fit the context budget. ` +
    'Their tool outputs can still be read with read_output and the call id.]'
  );
}

/** Keel messages of a fitted window: the task first, consecutive tool results grouped. */
function toMessages(task: string, dropped: number, entries: FittedWindow['entries']): Message[] {
  const out: Message[] = [{ role: 'user', text: dropped > 0 ? `${task}${droppedNote(dropped)}` : task }];
  for (const e of entries) {
    if (e.kind === 'user') out.push({ role: 'user', text: e.text });
    else if (e.kind === 'assistant') out.push({ role: 'assistant', ...(e.text ? { text: e.text } : {}), toolCalls: e.toolCalls });
    else {
      const result: ToolResult = { callId: e.callId, name: e.name, ok: e.ok, output: e.rendered ?? e.output };
      const last = out[out.length - 1];
      if (last?.role === 'tool') last.results.push(result);
      else out.push({ role: 'tool', results: [result] });
    }
  }
  return out;
}

/** Tokens the request costs before any transcript: the system prompt, the tool definitions and the task. */
export function fixedTokens(system: string, tools: ToolSet, task: string): number {
  const schemas = Object.entries(tools).map(([name, t]) => ({ name, description: t.description, schema: (t.inputSchema as { jsonSchema?: unknown }).jsonSchema }));
  return FIXED_OVERHEAD_TOKENS * (2 + schemas.length) + estimateTokens(JSON.stringify(system)) + estimateTokens(JSON.stringify(schemas)) + estimateTokens(JSON.stringify(task));
}

/** Fit the transcript into the model's budget and build the request's messages. */
export function buildRequest(args: {
  task: string;
  system: string;
  tools: ToolSet;
  model: { model: string; contextTokens?: number; maxOutputTokens: number };
  entries: readonly TranscriptEntry[];
  droppedBefore: number;
  outputLimit: number;
}): BuiltRequest {
  const window = contextWindowOf(args.model.model, args.model.contextTokens);
  const budgetTokens = Math.max(MIN_CONTEXT_BUDGET, window - args.model.maxOutputTokens);
  const fixed = fixedTokens(args.system, args.tools, args.task) + estimateTokens(droppedNote(args.droppedBefore + 999));
  const fitted = fitWindow(args.entries, { budgetTokens: Math.max(0, budgetTokens - fixed), outputLimit: args.outputLimit });
  const messages = toModelMessages(toMessages(args.task, args.droppedBefore + fitted.dropped, fitted.entries));
  return { messages, window: fitted, budgetTokens, estimatedTokens: fixed + fitted.estimatedTokens };
}

/** sha256 of the request's canonical JSON: what the model was asked, independent of the provider's wire format. */
export function requestSha(request: { model: string; system: string; messages: ModelMessage[]; tools: ToolSet; maxOutputTokens: number }): string {
  const tools = Object.entries(request.tools).map(([name, t]) => ({ name, description: t.description, schema: (t.inputSchema as { jsonSchema?: unknown }).jsonSchema }));
  const text = canonicalJson({ model: request.model, system: request.system, messages: request.messages, tools, maxOutputTokens: request.maxOutputTokens });
  return createHash('sha256').update(text).digest('hex');
}
