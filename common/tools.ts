/**
 * The tools a Keel agent can call, as zod schemas.
 *
 * The workflow validates every call with these before it reaches a sandbox;
 * the model activity hands the same schemas to the model as JSON Schema.
 * Pure code: safe to import from workflows.
 */
import { z } from 'zod';
import { DEFAULT_OUTPUT_LIMIT, DEFAULT_SHELL_TIMEOUT_SEC, FILE_TOOL_TIMEOUT_SEC } from './defaults';

const path = z.string().min(1).describe('Path, relative to /workspace or absolute.');

export const toolSchemas = {
  shell: z
    .object({
      command: z.string().min(1).describe('A bash command. Working directory and exported variables persist between calls.'),
      timeoutSec: z
        .number()
        .int()
        .positive()
        .max(3600)
        .optional()
        .describe(`Kill the command after this many seconds. Default ${DEFAULT_SHELL_TIMEOUT_SEC}.`),
    })
    .strict(),
  read_file: z
    .object({
      path,
      offset: z.number().int().min(1).optional().describe('First line to return, 1-based.'),
      limit: z.number().int().positive().optional().describe('How many lines to return.'),
    })
    .strict(),
  write_file: z
    .object({
      path,
      content: z.string().describe('The whole new content of the file. Parent folders are created.'),
    })
    .strict(),
  edit_file: z
    .object({
      path,
      old_string: z.string().min(1).describe('Exact text to replace; must occur exactly once.'),
      new_string: z.string().describe('Replacement text.'),
    })
    .strict(),
  list_files: z
    .object({
      path: z.string().optional().describe('Folder to list. Default /workspace.'),
      recursive: z.boolean().optional().describe('List sub-folders too (at most 1000 entries).'),
    })
    .strict(),
  read_output: z
    .object({
      callId: z.string().min(1).describe('The id of an earlier tool call whose output to read.'),
      offset: z.number().int().min(0).optional().describe('First character to return, 0-based. Default 0.'),
      limit: z.number().int().positive().optional().describe(`Most characters to return. Default and maximum ${DEFAULT_OUTPUT_LIMIT}.`),
    })
    .strict(),
  sleep: z
    .object({
      seconds: z.number().int().positive().max(30 * 24 * 3600).describe('How long to pause, in seconds (up to 30 days).'),
      reason: z.string().max(500).optional().describe('What you are waiting for, e.g. "CI run 1234".'),
    })
    .strict(),
} as const;

/**
 * How long a sandbox tool call may run, in seconds: a shell call's own `timeoutSec` or the default,
 * {@link FILE_TOOL_TIMEOUT_SEC} for file tools. The workflow sizes activity timeouts from it and the
 * sandbox host enforces it, so the two cannot drift apart.
 */
export function toolTimeoutSec(name: string, input: unknown): number {
  if (name !== 'shell') return FILE_TOOL_TIMEOUT_SEC;
  const t = (input as { timeoutSec?: unknown } | null)?.timeoutSec;
  return typeof t === 'number' && t > 0 ? t : DEFAULT_SHELL_TIMEOUT_SEC;
}

/** Tools the workflow itself carries out (durable timers). */
export const WORKFLOW_TOOLS: ReadonlySet<string> = new Set(['sleep']);
/** Tools the session worker carries out (they read the session's record, not its sandbox). */
export const SESSION_TOOLS: ReadonlySet<string> = new Set(['read_output']);
/** Sandbox tools that can change files: the workflow snapshots the sandbox after each (a rerun does the same). */
export const SNAPSHOT_TOOLS: ReadonlySet<string> = new Set(['shell', 'write_file', 'edit_file']);
/** Whether a tool runs in the sandbox. */
export function runsInSandbox(name: string): boolean {
  return !WORKFLOW_TOOLS.has(name) && !SESSION_TOOLS.has(name);
}

export type ToolName = keyof typeof toolSchemas;
export type ToolInput<N extends ToolName> = z.infer<(typeof toolSchemas)[N]>;

export const toolDescriptions: Record<ToolName, string> = {
  shell: 'Run a bash command in the sandbox. Returns combined stdout and stderr and the exit code.',
  read_file: 'Read a text file from the sandbox, with line numbers.',
  write_file: 'Create or overwrite a file in the sandbox.',
  edit_file: 'Replace one exact occurrence of old_string with new_string in a file.',
  list_files: 'List files in a folder of the sandbox.',
  read_output:
    'Read the whole output of an earlier tool call by its call id, in parts (offset, limit), e.g. when it was cut or elided from the conversation.',
  sleep:
    'Pause the session durably for minutes to days, e.g. to wait for CI or a person. A user message wakes it early. ' +
    'Long pauses release the sandbox; its files are restored when the session goes on.',
};

export const toolNames = Object.keys(toolSchemas) as ToolName[];

export function isToolName(name: string): name is ToolName {
  return Object.prototype.hasOwnProperty.call(toolSchemas, name);
}

export type Validation =
  | { ok: true; name: ToolName; input: ToolInput<ToolName> }
  | { ok: false; error: 'UnknownTool' | 'InvalidArguments'; message: string };

/** Validate a tool call from the model. Never throws: a bad call becomes an error result for the model. */
export function validateToolCall(name: string, input: unknown): Validation {
  if (!isToolName(name)) {
    return { ok: false, error: 'UnknownTool', message: `Unknown tool "${name}". Available tools: ${toolNames.join(', ')}.` };
  }
  const parsed = toolSchemas[name].safeParse(input);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((i) => `${i.path.length ? i.path.join('.') : '(arguments)'}: ${i.message}`)
      .join('; ');
    return { ok: false, error: 'InvalidArguments', message: `Invalid arguments for ${name}: ${issues}` };
  }
  return { ok: true, name, input: parsed.data };
}

/** JSON Schema of every tool, for model providers. */
export function toolJsonSchemas(): Record<ToolName, { description: string; parameters: Record<string, unknown> }> {
  const out = {} as Record<ToolName, { description: string; parameters: Record<string, unknown> }>;
  for (const name of toolNames) {
    out[name] = { description: toolDescriptions[name], parameters: z.toJSONSchema(toolSchemas[name]) as Record<string, unknown> };
  }
  return out;
}

/**
 * Cap text at `max` characters, keeping the head and the tail (where errors usually are),
 * and say how much was cut so the model knows it is not seeing everything.
 */
export function capOutput(text: string, max: number): string {
  if (text.length <= max) return text;
  const head = Math.floor(max * 0.4);
  const tail = max - head;
  const cut = text.length - head - tail;
  return `${text.slice(0, head)}\n[... ${cut} characters cut; ${text.length} in total ...]\n${text.slice(text.length - tail)}`;
}

/** One short line describing a tool call, for progress output. */
export function describeCall(name: string, input: unknown): string {
  const i = (input ?? {}) as Record<string, unknown>;
  const pick = typeof i.command === 'string' ? i.command : typeof i.path === 'string' ? i.path : JSON.stringify(input);
  const one = String(pick).replace(/\s+/g, ' ').trim();
  return one.length > 60 ? `${one.slice(0, 57)}...` : one;
}
