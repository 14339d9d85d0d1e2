/**
 * The activity interfaces the session workflow calls: the contract. Each factory in
 * `activities/` returns an object that `satisfies` one of these, so workflows
 * depend on types only, never on activity code, and a factory cannot drift from it.
 */
import type { ChainHead, SessionEvent } from './events';
import type { McpTool, SandboxMcpServer } from './mcp';
import type { WebhookDelivery, WebhookReceipt } from './webhooks';
import type { ContextWindow, Message, ModelSpec, ModelTurn, NetworkReport, RuntimeContract, SandboxHandle, SandboxSpec, SnapshotInfo, ToolCall, ToolResult } from './types';

/** Which container a call goes to: all a host needs once the call is on its queue (history carries it per call). */
export type ContainerRef = Pick<SandboxHandle, 'containerId'>;

export interface SandboxActivities {
  /**
   * Create (or find, on retry) generation `generation` of the session's container, restoring
   * snapshot `restoreFrom` into it when given. Runs on the shared sandbox queue, so any host can take it.
   */
  provisionSandbox(input: { sessionId: string; spec?: SandboxSpec; generation?: number; restoreFrom?: string }): Promise<SandboxHandle>;
  /**
   * Run one validated tool call in the session's container. With `snapshot`, also snapshot the
   * sandbox afterwards (compared with `snapshot.parent`) and set `result.snapshot` if files changed.
   * Runs on the owning host's queue.
   */
  runTool(input: { sessionId: string; handle: ContainerRef; call: ToolCall; snapshot?: { parent?: string } }): Promise<ToolResult>;
  /** Snapshot the sandbox now; null when nothing changed since `parent`. */
  snapshotSandbox(input: { sessionId: string; handle: ContainerRef; parent?: string }): Promise<SnapshotInfo | null>;
  /**
   * Remove the session's containers and volumes (only generations below `belowGeneration` when given). Idempotent.
   * Removing them all also removes a networked session's proxy, after collecting what it refused since the last call.
   */
  destroySandbox(input: { sessionId: string; belowGeneration?: number }): Promise<{ removed: boolean; network?: NetworkReport }>;
  /**
   * Start the session's sandbox MCP servers (`SessionSpec.mcpSandbox`) if they are not running, and list their
   * tools as `<server>__<tool>` (with `sandbox: true`). A server that cannot start throws `Mcp.SandboxUnavailable`.
   */
  listSandboxMcpTools(input: { sessionId: string; handle: ContainerRef; servers: Record<string, SandboxMcpServer> }): Promise<{ tools: McpTool[]; skipped: string[] }>;
  /**
   * One call of a sandbox MCP tool: arguments checked against its schema, then sent to its server in the
   * container (started again first if it is gone). The server's failures are error results. With `snapshot`,
   * as runTool. Runs on the owning host's queue.
   */
  callSandboxMcpTool(input: {
    sessionId: string;
    handle: ContainerRef;
    call: ToolCall;
    tool: McpTool;
    server: SandboxMcpServer;
    snapshot?: { parent?: string };
  }): Promise<ToolResult>;
}

/** One model call. Sessions built from the event log send `window` and `turn`; older ones send `system` and `messages`. */
export interface CallModelInput {
  sessionId: string;
  /** The model; a scripted model's script is read from the session's `session.started` event when absent here. */
  model: ModelSpec;
  /** The part of the event log the model sees. */
  window?: ContextWindow;
  /** Model turns the session has had before this one (a scripted model plays this turn of its script). */
  turn?: number;
  /** Before long-session support: the system prompt and the whole transcript, carried in history. */
  system?: string;
  messages?: Message[];
  /** The session's MCP tools, offered to the model beside the built-in ones (as listed by `listMcpTools`). */
  mcpTools?: McpTool[];
}

export interface ModelActivities {
  callModel(input: CallModelInput): Promise<ModelTurn>;
  /** The `read_output` tool: part of an earlier call's stored output, read from the event log and the blob store. */
  readOutput(input: { sessionId: string; call: ToolCall }): Promise<ToolResult>;
  /** The session worker's side of the runtime contract: the model's settings and the tools offered, with schema hashes. */
  describeRuntime(input: { model: ModelSpec; mcpTools?: McpTool[] }): Promise<Omit<RuntimeContract, 'sandbox' | 'workerBuildId'>>;
}

/** MCP servers beside the session worker (activities/mcp). */
export interface McpActivities {
  /** The tools of the named servers, named `<server>__<tool>`; `skipped` says which tools could not be offered, and why. */
  listMcpTools(input: { servers: string[] }): Promise<{ tools: McpTool[]; skipped: string[] }>;
  /** One call of an MCP tool; the server's failures are error results, never thrown. */
  callMcpTool(input: { sessionId: string; call: ToolCall; tool: McpTool }): Promise<ToolResult>;
}

export interface StoreActivities {
  /**
   * Append events, hash-chained; a retried write of the same seq is ignored. Returns the chain's head
   * after the batch: as a local activity's result it is recorded in the workflow history, which is
   * what makes rewriting the log in Postgres alone detectable.
   */
  recordEvents(input: { sessionId: string; events: SessionEvent[] }): Promise<ChainHead | undefined>;
  /**
   * A fork's start: copy another session's transcript events (user messages, model turns, tool calls and
   * results) up to `throughSeq` into this session from `startSeq` on, chained, each naming where it came from.
   */
  copyTranscript(input: { sessionId: string; from: string; throughSeq: number; startSeq: number }): Promise<TranscriptCopy>;
  /** Take a slot under the tenant's running cap (idempotent per session); says the tenant's daily ceilings. */
  admitSession(input: { sessionId: string; tenant: string }): Promise<Admission>;
  /**
   * Reserve (`settle: false`, refused past a ceiling) or settle (`settle: true`, always applied, either sign)
   * tokens and dollars of the tenant's daily ceilings.
   */
  chargeTenant(input: { tenant: string; tokens: number; usd: number; settle: boolean }): Promise<{ ok: boolean; tokens: number; usd: number }>;
}

/** A session's admission under its tenant's caps, and the daily ceilings model calls must reserve against. */
export interface Admission {
  admitted: boolean;
  running: number;
  maxRunning?: number;
  dailyTokens?: number;
  dailyUsd?: number;
  /** The tenant's webhook URL (`keel tenant set --webhook`), for sessions whose spec names none. */
  webhookUrl?: string;
}

/** What a fork copied: how many events (the workflow's seq moves past them), steps and tool calls, and the chain head. */
export interface TranscriptCopy {
  copied: number;
  steps: number;
  toolCalls: number;
  head?: ChainHead;
}

export interface WebhookActivities {
  /** POST one signed webhook (common/webhooks.ts); retried with backoff on 5xx, 408, 429 and network errors. */
  deliverWebhook(input: WebhookDelivery): Promise<WebhookReceipt>;
}

/** What the eval workflow (workflows/eval.ts) reads about a rollout's session once it has ended. */
export interface RolloutFacts {
  /** The snapshot of its files after the last step that changed them (none: it changed nothing). */
  lastSnapshot?: string;
  contract?: RuntimeContract;
  /** From its first recorded event to its last. */
  wallMs: number;
  /** Dollars for its model calls, when the model's price is known. */
  costUsd?: number;
}

export interface EvalActivities {
  /** Read an ended session's last snapshot, runtime contract, wall time and cost from the event log. */
  rolloutFacts(input: { sessionId: string; model: ModelSpec }): Promise<RolloutFacts>;
}
