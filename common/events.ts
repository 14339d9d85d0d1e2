/**
 * The event log's vocabulary: every event type a session records, with the
 * shape of its `data`. Writers (`emit` in the workflow) and readers (CLI, API,
 * audit) share these types, so no payload is read with a cast. Pure code.
 *
 * Older rows may lack fields added later; such fields are optional here.
 */
import type { PolicyRule } from './policy';
import type {
  Budgets,
  ContentRef,
  ModelTurn,
  NetworkRefusal,
  RuntimeContract,
  SandboxRuntimeInfo,
  SessionResult,
  SessionSpec,
  SessionStatus,
  SnapshotInfo,
  ToolResult,
} from './types';

/** Where a sandbox generation runs. */
export interface SandboxPlace {
  containerId: string;
  hostId: string;
  image: string;
  generation: number;
  /** What the container runs on (image id, executor version, limits, network). */
  runtime?: SandboxRuntimeInfo;
}

/** On events a fork copied from the session it forked: where each came from. */
export interface Copied {
  copiedFrom?: { sessionId: string; seq: number };
}

export interface EventPayloads {
  /** `spec` is the whole spec (model script and system prompt included): model calls read them from here. */
  'session.started': { task: string; model: string; tenant: string; maxSteps: number; workflowRunId?: string; spec?: SessionSpec };
  /** What the session runs on: model, tools, worker build, sandbox image and executor. */
  'session.contract': RuntimeContract;
  /** A new workflow run took over (continue-as-new), carrying the session's state. */
  'session.continued': { run: number; workflowRunId: string; step: number };
  'session.status': { status: SessionStatus; reason?: string };
  'sandbox.provisioned': SandboxPlace;
  /** A container replaced one that was lost (killed, OOM, host gone), restored from `snapshot`. */
  'sandbox.restored': SandboxPlace & { snapshot?: string; reason: string };
  /** A snapshot taken outside a tool call (before a suspend). */
  'sandbox.snapshot': SnapshotInfo & { reason: string };
  /** The container was released while the session waits; `lost` when it was already gone. */
  'sandbox.suspended': { containerId: string; generation: number; snapshot?: string; reason: string; lost?: string };
  'sandbox.resumed': SandboxPlace & { snapshot?: string };
  'sandbox.removed': { containerId: string; removed: boolean; snapshot?: string };
  /** A model turn as the model activity returned it (text a preview when `textRef` holds the whole). */
  'model.call': Copied & { step: number } & ModelTurn;
  /** `input` is a preview when `inputRef` holds the whole arguments. */
  'tool.call': Copied & { step: number; callId: string; name: string; input: unknown; inputRef?: ContentRef };
  'tool.result': Copied & { step: number } & ToolResult;
  'message.user': Copied & { text: string };
  /**
   * Connections the session's egress proxy refused, reported after tool call `callId` (made by it, or by
   * something still running from before), or, without `callId`, when the sandbox was released (suspend,
   * teardown). `dropped` (on the last of a report): more refusals, only counted.
   */
  'network.refused': { step: number; callId?: string; dropped?: number } & NetworkRefusal;
  'session.error': { message: string; type?: string };
  /** A call the policy says a person must approve; the session waits for `approval.decided`. */
  'approval.requested': { step: number; callId: string; tool: string; input: unknown; rule?: PolicyRule; reason?: string; timeoutSec: number };
  /** The answer: `approve` (with `remember`, an exact-match rule is added for the session), `deny`, or `timeout`. */
  'approval.decided': { callId: string; decision: 'approve' | 'deny' | 'timeout'; remember?: boolean; by: string; reason?: string; waitedSec: number };
  /** The session stopped at a budget; it holds no container until budget is added. */
  'budget.exhausted': { budget: string; used: number; limit: number; reserve?: number };
  /** Budget added (`keel budget`), and by whom. */
  'budget.added': { add: Budgets; by: string };
  /** Something about the budgets the operator should know (e.g. a model with no known price). */
  'budget.warning': { message: string };
  /** The tenant's cap on running sessions: admitted, queued or refused. */
  'session.admission': { tenant: string; outcome: 'admitted' | 'queued' | 'refused'; running: number; max: number };
  /**
   * `source: 'reconciler'` when Keel wrote it after Temporal ended the workflow outside Keel's code
   * (terminated, timed out): not anchored in the workflow's history.
   */
  'session.ended': SessionResult & { reason?: string; source?: 'workflow' | 'reconciler' };
  /**
   * The session's whole Temporal history (every run) was copied to the blob store, so audit,
   * replay, rerun, fork and export outlive Temporal's retention. Written by the archiver after
   * the end: not anchored in the history it archives.
   */
  'session.archived': { ref: ContentRef; runs: string[]; historyEvents: number; source: 'archiver' };
}

export type EventType = keyof EventPayloads;
export type EventData<T extends EventType> = EventPayloads[T];

/** An event as the workflow emits it. `seq` is assigned by the workflow, so a retried write is a no-op. */
export type SessionEvent = { [T in EventType]: { seq: number; type: T; data: EventPayloads[T] } }[EventType];

/** An event as read back from the log: the emitted event plus where and when it was stored. */
export type EventRow = SessionEvent & { sessionId: string; at: Date };

/** Narrow a list of events to one type. */
export function eventsOfType<T extends EventType, E extends { type: EventType }>(events: readonly E[], type: T): Array<Extract<E, { type: T }>> {
  return events.filter((e): e is Extract<E, { type: T }> => e.type === type);
}

/** The head of a session's event chain after a write: the last seq written and its hash (see store/chain.ts). */
export interface ChainHead {
  through: number;
  head: string;
}
