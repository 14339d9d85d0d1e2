/**
 * What the model activity does with the tool calls a model made, before they
 * reach workflow history: at most MAX_TOOL_CALLS_PER_TURN of them, each checked
 * for size, nesting depth and schema (a violation becomes an invalid call the
 * model gets as an error result, never a failed session), and large arguments
 * moved to the blob store.
 */
import { fitsInline, preview, putContent, type BlobStore } from '../../blobs';
import { MAX_TOOL_CALLS_PER_TURN, MAX_TOOL_INPUT_BYTES, MAX_TOOL_INPUT_DEPTH } from '../../common/defaults';
import type { McpTool } from '../../common/mcp';
import { validateToolCall } from '../../common/tools';
import type { ToolCall } from '../../common/types';

/** Nesting depth of a JSON value, walked without recursion (a 20,000-deep value must not overflow the stack). */
export function jsonDepth(value: unknown, stopAt = Infinity): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, d] = stack.pop() as [unknown, number];
    if (v === null || typeof v !== 'object') continue;
    if (d > max) max = d;
    if (max > stopAt) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, d + 1]);
  }
  return max;
}

/** The input with every long string shortened: what workflow history and the event log carry for a stored input. */
function digest(input: unknown, max = 200): unknown {
  if (typeof input === 'string') return input.length > max ? `${input.slice(0, max)}[... ${input.length - max} more characters]` : input;
  if (Array.isArray(input)) return input.slice(0, 50).map((v) => digest(v, max));
  if (input && typeof input === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(input).slice(0, 50)) out[k.slice(0, max)] = digest(v, max);
    return out;
  }
  return input;
}

/** The calls as the workflow gets them, and how many were dropped past the per-turn limit. */
export async function prepareCalls(raw: readonly ToolCall[], blobs: BlobStore, mcpTools?: readonly McpTool[]): Promise<{ calls: ToolCall[]; dropped: number }> {
  const mcp = new Set((mcpTools ?? []).map((t) => t.name));
  const kept = raw.slice(0, MAX_TOOL_CALLS_PER_TURN);
  const calls: ToolCall[] = [];
  for (const c of kept) {
    const text = typeof c.input === 'string' ? c.input : undefined;
    const depth = text === undefined ? jsonDepth(c.input, MAX_TOOL_INPUT_DEPTH) : 0;
    if (depth > MAX_TOOL_INPUT_DEPTH) {
      calls.push({
        id: c.id,
        name: c.name,
        input: `(arguments nested deeper than ${MAX_TOOL_INPUT_DEPTH} levels; not kept)`,
        invalid: { error: 'InvalidArguments', message: `The arguments of ${c.name} are nested deeper than ${MAX_TOOL_INPUT_DEPTH} levels.` },
      });
      continue;
    }
    const json = text ?? JSON.stringify(c.input) ?? 'null';
    const bytes = Buffer.byteLength(json, 'utf8');
    if (bytes > MAX_TOOL_INPUT_BYTES) {
      calls.push({
        id: c.id,
        name: c.name,
        input: preview(json, 200, 200),
        invalid: {
          error: 'InvalidArguments',
          message: `The arguments of ${c.name} are ${bytes} bytes; the limit is ${MAX_TOOL_INPUT_BYTES}. Write large content in several smaller calls.`,
        },
      });
      continue;
    }
    // An MCP tool's arguments are checked against its server's schema where it runs (activities/mcp).
    const checked = mcp.has(c.name) ? ({ ok: true } as const) : validateToolCall(c.name, c.input);
    const more = !checked.ok && checked.error === 'UnknownTool' && mcp.size ? ` MCP tools: ${[...mcp].join(', ')}.` : '';
    const invalid = checked.ok ? undefined : { error: checked.error, message: checked.message + more };
    if (fitsInline(json)) {
      calls.push({ id: c.id, name: c.name, input: c.input, ...(invalid ? { invalid } : {}) });
      continue;
    }
    const inputRef = await putContent(blobs, json);
    calls.push({ id: c.id, name: c.name, input: digest(c.input), inputRef, ...(invalid ? { invalid } : {}) });
  }
  return { calls, dropped: raw.length - kept.length };
}
