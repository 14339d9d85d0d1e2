/**
 * Translation between validated tool calls and executor requests, and from
 * executor answers to the `ToolResult` the model sees. Tool failures are
 * results, not exceptions.
 */
import { OUTPUT_STORE_CAP } from '../../common/defaults';
import { capOutput, toolTimeoutSec, type ToolInput, type ToolName } from '../../common/tools';
import type { ToolCall, ToolResult } from '../../common/types';
import type { ExecutorResponse } from '../../host/executor-client';

export interface ExecutorOp {
  op: ToolName;
  args: Record<string, unknown>;
  /** How long the executor may take before the client gives up on it. */
  timeoutMs: number;
}

/** Slack over a shell command's own timeout for process teardown and transport. */
const TRANSPORT_SLACK_MS = 30_000;

/** The executor request for a validated call; the shell's timeout is always explicit (see `toolTimeoutSec`). */
export function toExecutorOp(name: ToolName, input: ToolInput<ToolName>, limits: { outputLimit: number }): ExecutorOp {
  const args: Record<string, unknown> = { ...(input as Record<string, unknown>), maxOutput: limits.outputLimit };
  const timeoutSec = toolTimeoutSec(name, input);
  if (name === 'shell') {
    args.timeoutSec = timeoutSec;
    // The executor keeps this much of the output (head and tail) for the blob store.
    args.storeBytes = OUTPUT_STORE_CAP;
    return { op: name, args, timeoutMs: timeoutSec * 1000 + TRANSPORT_SLACK_MS };
  }
  return { op: name, args, timeoutMs: timeoutSec * 1000 };
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

/**
 * The whole output of a shell call whose model view was cut: the bytes the executor kept (the first and
 * last halves of `storeBytes` of the stream), with a note where the middle was cut. Undefined when the
 * answer carries no `full` (the output was short enough to arrive whole).
 */
export function wholeOutput(response: ExecutorResponse, storeBytes = OUTPUT_STORE_CAP): { text: string; cutBytes: number } | undefined {
  if (!response.ok || typeof response.result.full !== 'string') return undefined;
  const kept = Buffer.from(response.result.full, 'base64');
  const cutBytes = num(response.result.cutBytes) ?? 0;
  if (cutBytes <= 0) return { text: kept.toString('utf8'), cutBytes: 0 };
  const half = Math.floor(storeBytes / 2);
  const head = kept.subarray(0, half).toString('utf8');
  const tail = kept.subarray(half).toString('utf8');
  return { text: `${head}\n[... ${cutBytes} bytes cut: the output passed the ${storeBytes} byte storage cap ...]\n${tail}`, cutBytes };
}

/** Build the model-facing result of one executor answer. */
export function toToolResult(call: ToolCall, name: ToolName, response: ExecutorResponse, outputLimit: number, durationMs: number): ToolResult {
  const base = { callId: call.id, name: call.name };
  // The executor already capped; this guards against an executor that did not.
  const cap = (s: string): string => capOutput(s, outputLimit + 200);
  if (!response.ok) {
    return { ...base, ok: false, error: response.error.code, output: cap(response.error.message), durationMs };
  }
  const r = response.result;
  switch (name) {
    case 'shell': {
      const exitCode = num(r.exitCode) ?? -1;
      const ms = num(r.durationMs) ?? durationMs;
      // The whole output when the executor sent it (its `output` is then the capped model view).
      const whole = wholeOutput(response);
      let output = whole?.text ?? str(r.output);
      const timeoutSec = num((call.input as { timeoutSec?: unknown }).timeoutSec);
      let error: string | undefined;
      if (r.timedOut === true) {
        error = 'Timeout';
        output += `${sep(output)}[timed out${timeoutSec ? ` after ${timeoutSec}s` : ''}; the command and every process it started were killed]`;
      } else if (r.cancelled === true) {
        error = 'Cancelled';
        output += `${sep(output)}[cancelled; the command and every process it started were killed]`;
      } else if (exitCode !== 0) {
        error = 'NonZeroExit';
        output += `${sep(output)}[exit code ${exitCode}]`;
      } else if (!output) {
        output = '(no output)';
      }
      const result: ToolResult = { ...base, ok: error === undefined, output: whole ? output : cap(output), exitCode, durationMs: ms };
      if (error) result.error = error;
      return result;
    }
    case 'read_file': {
      let output = str(r.content) || '(empty file)';
      const total = num(r.totalLines) ?? 0;
      const first = num(r.firstLine) ?? 1;
      const last = num(r.lastLine) ?? 0;
      if (total > 0 && (first > 1 || last < total)) {
        output += `${sep(output)}[lines ${first}-${last} of ${total}; use offset and limit to read others]`;
      }
      return { ...base, ok: true, output: cap(output), durationMs };
    }
    case 'write_file':
      return { ...base, ok: true, output: `Wrote ${num(r.bytes) ?? 0} bytes to ${str(r.path)}.`, durationMs };
    case 'edit_file':
      return { ...base, ok: true, output: `Edited ${str(r.path)}: replaced 1 occurrence.`, durationMs };
    case 'list_files': {
      const entries = Array.isArray(r.entries) ? r.entries.map(String) : [];
      let output = entries.length ? entries.join('\n') : '(empty directory)';
      if (r.truncated === true) output += `\n[... more entries not shown; at most ${entries.length} are listed]`;
      return { ...base, ok: true, output: cap(output), durationMs };
    }
    case 'sleep':
    case 'read_output':
      // Carried out by the session (a durable timer, a read of the event log); the workflow never sends them here.
      return { ...base, ok: false, error: 'UnknownTool', output: `${name} is carried out by the session, not the sandbox`, durationMs };
  }
}

function sep(output: string): string {
  return output === '' || output.endsWith('\n') ? '' : '\n';
}
