/**
 * What `keel audit rerun` re-executes, read from the event log alone: each call
 * a sandbox carried out, with the files it started from, the image it ran on and
 * what it returned. Pure code.
 *
 * The files a call started from are the latest snapshot recorded before its
 * `tool.call` event (by a `tool.result` or a `sandbox.snapshot`); none means an
 * empty workspace. That is exactly what the workflow restores a lost sandbox to.
 */
import type { EventRow } from '../common/events';
import { isToolName, runsInSandbox } from '../common/tools';
import type { ContentRef, SandboxSpec, ToolResult } from '../common/types';

/** One recorded sandbox tool call. */
export interface RecordedCall {
  /** Seq of its `tool.call` event. */
  seq: number;
  step: number;
  callId: string;
  name: string;
  /** The arguments; a preview when `inputRef` holds them whole. */
  input: unknown;
  inputRef?: ContentRef;
  /** The snapshot the sandbox held when the call started; undefined: an empty workspace. */
  before?: string;
  /** The image of the sandbox the call ran in (the latest provision, restore or resume before it). */
  image?: string;
  /** What the call returned, as recorded; undefined when no result was recorded. */
  result?: ToolResult;
  /** Why the call cannot be rerun and compared; undefined when it can. */
  skip?: string;
}

/** Errors the workflow itself gives a call it interrupted or could not finish: not the sandbox's outcome. */
const WORKFLOW_ERRORS = new Set(['Cancelled', 'Failed', 'SandboxLost']);

/** Why a recorded call cannot be compared with a rerun of it, or undefined when it can. */
function skipReason(result: ToolResult | undefined): string | undefined {
  if (!result) return 'no result recorded (the session is running, or ended during the call)';
  if (result.injected) return `a deliberate fault (${result.injected}) answered it: the call never reached a sandbox`;
  if (result.error === 'Denied') return 'denied (by the policy or a person): the call never ran';
  if (result.error && WORKFLOW_ERRORS.has(result.error)) return `the workflow's own result (${result.error}): the call did not finish in its sandbox`;
  // Refused before reaching a sandbox: such results carry no duration.
  if ((result.error === 'InvalidArguments' || result.error === 'UnknownTool') && result.durationMs === undefined) {
    return `never reached a sandbox (${result.error})`;
  }
  return undefined;
}

/** Every sandbox tool call of a session (not `sleep` or `read_output`), in order. */
export function recordedCalls(events: readonly EventRow[]): RecordedCall[] {
  const results = new Map<string, ToolResult>();
  for (const e of events) if (e.type === 'tool.result') results.set(e.data.callId, e.data);
  const calls: RecordedCall[] = [];
  let snapshot: string | undefined;
  let image: string | undefined;
  for (const e of [...events].sort((a, b) => a.seq - b.seq)) {
    switch (e.type) {
      case 'tool.result':
        if (e.data.snapshot) snapshot = e.data.snapshot.id;
        break;
      case 'sandbox.snapshot':
        snapshot = e.data.id;
        break;
      case 'sandbox.provisioned':
      case 'sandbox.restored':
      case 'sandbox.resumed':
        image = e.data.image;
        break;
      case 'tool.call': {
        const { callId, name, step, input, inputRef } = e.data;
        if (!isToolName(name) || !runsInSandbox(name)) break;
        const result = results.get(callId);
        const skip = skipReason(result);
        calls.push({
          seq: e.seq,
          step,
          callId,
          name,
          input,
          ...(inputRef ? { inputRef } : {}),
          ...(snapshot ? { before: snapshot } : {}),
          ...(image ? { image } : {}),
          ...(result ? { result } : {}),
          ...(skip ? { skip } : {}),
        });
        break;
      }
      default:
        break;
    }
  }
  return calls;
}

/** The sandbox limits the session recorded (its `session.started` spec), without the image. */
export function recordedLimits(events: readonly EventRow[]): Omit<SandboxSpec, 'image'> {
  const started = events.find((e) => e.type === 'session.started');
  const sandbox = started?.type === 'session.started' ? started.data.spec?.sandbox : undefined;
  const { image: _image, ...limits } = sandbox ?? {};
  return limits;
}
