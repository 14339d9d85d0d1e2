/**
 * Types shared by workflows, activities, workers and the CLI.
 *
 * This folder (`common/`) imports nothing from Node: workflow code runs in
 * Temporal's deterministic V8 sandbox and may import it.
 */
import type { SandboxMcpServer } from './mcp';
import type { ApprovalPolicy } from './policy';
import type { WebhookSpec } from './webhooks';

/** Which model drives a session. API keys never appear here: workers read them from their environment. */
export interface ModelSpec {
  /** `scripted`, `anthropic`, `openai` or `openai-compatible`. */
  provider: 'scripted' | 'anthropic' | 'openai' | 'openai-compatible';
  /** Model name as the provider knows it, e.g. `claude-sonnet-4-5`, `gpt-4o`, `llama3.1`. For `scripted`, a label. */
  model: string;
  /**
   * Base URL for `openai-compatible` (vLLM, Ollama, llama.cpp). Refused for `anthropic` and `openai`:
   * their keys must not follow a URL a client chose; set ANTHROPIC_BASE_URL / OPENAI_BASE_URL on the worker instead.
   */
  baseURL?: string;
  /** The turns a `scripted` model plays, in order. Required for `scripted`, ignored otherwise. */
  script?: ScriptTurn[];
  /** @default DEFAULT_MAX_OUTPUT_TOKENS (4096) */
  maxOutputTokens?: number;
  /** US dollars per million input and output tokens, overriding the price table (common/prices.ts). */
  price?: { inputPerMTok: number; outputPerMTok: number };
  /**
   * The model's context window in tokens; the transcript the model sees is fitted into it minus
   * `maxOutputTokens` (see common/context.ts).
   * @default from the table in common/context.ts by model name, else 32768
   */
  contextTokens?: number;
}

/** One turn of a scripted model: what the "model" says and which tools it calls. */
export interface ScriptTurn {
  text?: string;
  toolCalls?: Array<{ name: string; input: unknown }>;
}

/** Resource limits and image for a session's sandbox container. Every field has a safe default (`SANDBOX_DEFAULTS`). */
export interface SandboxSpec {
  /** @default the sandbox host's default image (`keel-sandbox:<recipe hash>`, built from sandbox/) */
  image?: string;
  /** @default 1024 */
  memoryMb?: number;
  /** @default 1 */
  cpus?: number;
  /** @default 256 */
  pidsLimit?: number;
  /**
   * A `sleep` longer than this many seconds snapshots the sandbox and releases its container;
   * it is restored when the session goes on. @default 300
   */
  idleSuspendSec?: number;
  /**
   * How long a sandbox host may leave a tool call queued before the session restores its sandbox
   * on another host. @default 30
   */
  hostTimeoutSec?: number;
  /**
   * The Docker runtime the container runs under: `runc`, or `runsc` (gVisor, a user-space kernel between
   * the commands and the host's) when the sandbox host registered it. @default the worker's `KEEL_SANDBOX_RUNTIME` (runc)
   */
  runtime?: string;
  /** Size of /workspace, a filesystem of its own (MiB): a command that fills it gets ENOSPC, the host's disk is untouched. @default 2048 */
  diskMb?: number;
  /**
   * Let the sandbox reach these hosts, and nothing else, through Keel's egress proxy (common/sandbox-spec.ts
   * checks it). Such a session gets a Docker network of its own and never a warm-pool container.
   * @default no network at all
   */
  network?: NetworkSpec;
}

/** A session's egress allowlist. */
export interface NetworkSpec {
  allow: EgressRule[];
}

/** One allowed destination: a host name (`example.com`, or `*.example.com` for every name under it) and its ports. */
export interface EgressRule {
  host: string;
  /** @default [443] */
  ports?: number[];
}

/** A connection the egress proxy refused: counted per host, port and reason since the last report. */
export interface NetworkRefusal {
  /** The name (or address) asked for, reduced to host-name characters. */
  host: string;
  port: number;
  /**
   * `not-allowed` (not on the allowlist), `address-literal` (an IP address, not a name),
   * `private-address` (the name resolves to a private, loopback, link-local or other non-public address),
   * `dns-failed`, `bad-request` (not a proxy request).
   */
  reason: string;
  /** The address that made a `private-address` refusal. */
  address?: string;
  count: number;
  /** When the first of them was refused (ISO 8601). */
  at: string;
}

/** Everything needed to start a session. The workflow id is the session id. */
export interface SessionSpec {
  task: string;
  model: ModelSpec;
  sandbox?: SandboxSpec;
  /** Model turns before the session stops with status `step_limit`. @default DEFAULT_MAX_STEPS (50) */
  maxSteps?: number;
  /** @default 'default' */
  tenant?: string;
  /** Replaces the built-in system prompt. */
  systemPrompt?: string;
  /**
   * Keep the session alive when the model answers without tool calls: it waits durably for the next
   * user message (releasing its container after `sandbox.idleSuspendSec`) and ends on `close`, on
   * cancel, or after `idleTimeoutSec` without a message. @default false
   */
  keepAlive?: boolean;
  /** With `keepAlive`: end the session after this many seconds without a message. @default 604800 (7 days) */
  idleTimeoutSec?: number;
  /**
   * Model turns one workflow run may take before the session continues as new (Temporal also
   * suggests it when a run's history grows past its limits). @default 1000
   */
  stepsPerRun?: number;
  /** Which tool calls run, which are refused, and which wait for a person (common/policy.ts). @default allow everything */
  policy?: ApprovalPolicy;
  /** Ceilings on what the session may spend; it pauses (`budget_exhausted`) at the first it reaches. @default none */
  budgets?: Budgets;
  /** Deliberate tool faults, to see whether the agent copes (common/inject.ts). @default none */
  inject?: FaultInjection;
  /**
   * MCP servers whose tools this session is offered (`<server>__<tool>`), by the names the operator gave them
   * in the session worker's KEEL_MCP_CONFIG. The servers run beside the worker, never in the sandbox.
   */
  mcp?: string[];
  /**
   * Stdio MCP servers run inside this session's sandbox, by name (`<name>__<tool>`): started by the executor as
   * the commands' user in /workspace, started again after a restore or when they exit. Recorded whole: no secrets.
   */
  mcpSandbox?: Record<string, SandboxMcpServer>;
  /** A URL told, by a signed POST, when the session waits, runs out of budget or ends (common/webhooks.ts). @default the tenant's, else none */
  webhook?: WebhookSpec;
  /** With tenant caps: wait for a free slot instead of being refused when the tenant runs its maximum. @default false */
  queue?: boolean;
  /** Start from another session's transcript and files at one of its steps (`keel fork`). */
  fork?: ForkSpec;
  /**
   * Files /workspace starts with: a snapshot already in the blob store (`keel run --workspace`, or
   * `prepareWorkspace` from `keel/client/workspace`). It is the session's first snapshot; not with `fork`.
   */
  workspace?: WorkspaceSeed;
  /** Messages the model sees right after the task (a fork's new instruction). */
  messages?: string[];
  /**
   * The session this one re-runs (`keel audit rerun <id> --model replay`): its recorded model answers
   * are replayed as a scripted model. Recorded in `session.started` with the rest of the spec.
   */
  rerunOf?: string;
}

/**
 * Content kept in the blob store rather than in workflow history: a large tool output,
 * tool input or model text. Written once, named by the sha256 of its bytes.
 */
export interface ContentRef {
  /** sha256 (hex) of the stored bytes. */
  sha: string;
  /** Bytes stored. */
  bytes: number;
  /**
   * Bytes cut out of the middle before storing, when the content passed the storage cap
   * (`OUTPUT_STORE_CAP`); the stored bytes then say so where the cut is.
   */
  cutBytes?: number;
}

export interface ToolCall {
  /** Unique within the session (the model's own id, or one the workflow assigns). */
  id: string;
  name: string;
  /** The arguments; when `inputRef` is set, a preview of them with long strings shortened. */
  input: unknown;
  /** The whole arguments (JSON), when they were too big to carry in workflow history. */
  inputRef?: ContentRef;
  /**
   * Set by the model activity when the call cannot run (unknown tool, invalid or oversized arguments,
   * one call too many): the model gets this as the call's error result.
   */
  invalid?: { error: string; message: string };
}

export interface ToolResult {
  callId: string;
  name: string;
  /** false when the arguments were invalid, the tool failed, or the command exited non-zero. */
  ok: boolean;
  /**
   * The output: whole when small; otherwise a short preview (head and tail) and the whole output,
   * up to the storage cap, is in `outputRef`. The model sees it capped at the output limit.
   */
  output: string;
  /** The whole output in the blob store, when it did not fit inline. */
  outputRef?: ContentRef;
  exitCode?: number;
  durationMs?: number;
  /** Machine-readable reason when the tool itself failed, e.g. `InvalidArguments`, `UnknownTool`, `Timeout`, `NotFound`. */
  error?: string;
  /** Set when the call was asked to snapshot and changed the sandbox's files. */
  snapshot?: SnapshotInfo;
  /** A deliberate fault (`SessionSpec.inject`) made this result; the call did not run. */
  injected?: FaultInjection['rules'][number]['fault'];
  /**
   * Connections the egress proxy refused since the previous report (networked sessions). The workflow records
   * them as `network.refused` events, not in the result.
   */
  network?: NetworkReport;
}

/** What an egress proxy refused since its last report. */
export interface NetworkReport {
  refused: NetworkRefusal[];
  /** Refusals past the report's limit, only counted. */
  dropped: number;
}

/**
 * A content-addressed snapshot of a sandbox's writable files (/workspace and /home/keel).
 * Its id is the sha256 of its manifest; files are stored once per content hash.
 */
export interface SnapshotInfo {
  /** sha256 (hex) of the canonical manifest; the same files give the same id. */
  id: string;
  /** The snapshot this one was compared with. */
  parent?: string;
  /** Files and bytes in the whole snapshot. */
  files: number;
  bytes: number;
  /** What changed since `parent`. */
  added: number;
  modified: number;
  removed: number;
  /** Bytes of added and modified files. */
  changedBytes: number;
  /** Bytes the blob store did not have yet (after deduplication). */
  uploadedBytes: number;
  durationMs: number;
}

export type Message =
  | { role: 'user'; text: string }
  | { role: 'assistant'; text?: string; toolCalls: ToolCall[] }
  | { role: 'tool'; results: ToolResult[] };

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
}

/** How the request of one model call was built (recorded with the call, so audit sees what the model saw). */
export interface ContextReport {
  /** The first event seq in the window; the workflow passes it back next time. */
  fromSeq: number;
  /** The last event seq the model saw. */
  throughSeq: number;
  /** Estimated tokens of the whole request (system, tools, transcript), and the budget it had to fit. */
  estimatedTokens: number;
  budgetTokens: number;
  /** Tool outputs shown elided, and turns dropped from the window in this call. */
  elided: number;
  dropped: number;
  /** sha256 of the canonical JSON of the request (system, messages, tools, model settings). */
  requestSha: string;
  /** sha256 of the exact HTTP body sent to the provider, when one was sent. */
  bodySha?: string;
}

/** What the model activity returns for one call. */
export interface ModelTurn {
  /** The model's text; a preview when `textRef` is set. */
  text?: string;
  /** The whole text, when it was too big to carry in workflow history. */
  textRef?: ContentRef;
  toolCalls: ToolCall[];
  /** Calls past the per-turn limit: not run, not kept in the transcript, counted here. */
  droppedCalls?: number;
  finishReason: string;
  usage: TokenUsage;
  durationMs: number;
  /** Set when the request was built from the event log (sessions started since long-session support). */
  context?: ContextReport;
}

/** The part of the transcript a model call sees: events `fromSeq`..`throughSeq` and the task. */
export interface ContextWindow {
  fromSeq: number;
  throughSeq: number;
  /** Turns dropped from the window so far (the model is told). */
  dropped: number;
}

/** Where a session's sandbox lives; later sandbox activities go to `hostQueue` (host affinity). */
export interface SandboxHandle {
  containerId: string;
  /** Counts the containers a session has had: 1 at first, +1 per restore. @default 1 */
  generation?: number;
  /** The snapshot the container was restored from, if any. */
  restoredFrom?: string;
  hostQueue: string;
  hostId: string;
  image: string;
  /** What the container runs on, for the session's runtime contract. Absent from handles made by older hosts. */
  runtime?: SandboxRuntimeInfo;
  /**
   * How often this host's tool calls heartbeat, ms. Absent from handles made by older hosts, which beat
   * every 2 s: their calls keep the 10 s heartbeat timeout (a shorter one would time out every long call).
   */
  toolHeartbeatMs?: number;
}

/** The sandbox side of a session's runtime contract: what its container actually ran. */
export interface SandboxRuntimeInfo {
  /** The image's content id (`sha256:…`) and registry digests (none for images built locally). */
  imageId: string;
  imageDigests: string[];
  /** The executor's version: the hash of the sandbox recipe it was built from (image label `keel.recipe`). */
  executor: string;
  /** Memory, CPU, pids and /workspace size limits the container got, and its network policy. */
  limits: { memoryMb: number; cpus: number; pidsLimit: number; diskMb?: number };
  network: string;
  /** The Docker runtime it ran under (`runc`, `runsc`); absent in contracts recorded before the choice existed. */
  ociRuntime?: string;
}

/**
 * What a session ran on, recorded once in its `session.contract` event: enough to tell, later,
 * what differs between the runtime that recorded it and the one that re-runs it.
 */
export interface RuntimeContract {
  model: { provider: string; model: string; maxOutputTokens: number; contextTokens?: number; baseURL?: string };
  /** The tools offered to the model, each with the sha256 of its JSON Schema. */
  tools: Array<{ name: string; schemaSha: string }>;
  /** The session worker's build id (`keel-<hash of the workflow bundle>`) and Keel's version. */
  workerBuildId?: string;
  keelVersion: string;
  sandbox?: SandboxRuntimeInfo & { image: string };
}

/** A session's seed: a snapshot stored before the session starts, which its sandbox is restored from. */
export interface WorkspaceSeed {
  /** The snapshot id (sha256 of its root object), in the blob store the sandbox hosts read. */
  snapshot: string;
  /** Files and bytes it holds. */
  files: number;
  bytes: number;
  /** Bytes the blob store did not have yet when it was stored. @default 0 */
  uploadedBytes?: number;
  /** What it was made from, for people: `git <path> <ref> (<commit>)`, `dir <path>`, `tar <path>`. */
  source?: string;
}

/** Where a forked session starts: another session's transcript up to a step, and its files at that step. */
export interface ForkSpec {
  /** The session forked from. */
  from: string;
  /** Its step the fork starts after. */
  atStep: number;
  /** The last event of that session the fork's transcript copies. */
  throughSeq: number;
  /** The snapshot of its files at that step (none: the files were never changed). */
  snapshot?: string;
  /**
   * Model turns the fork's own model does not count: a scripted model given for the fork plays its
   * script from the start (offset = `atStep`); the original's scripted model carries on (offset 0). @default 0
   */
  modelTurnOffset?: number;
}

/** Ceilings a session may not pass. Time spent waiting (for a message, an approval, more budget) does not count. */
export interface Budgets {
  inputTokens?: number;
  outputTokens?: number;
  /** Cost in US dollars, from the price table in common/prices.ts (or `ModelSpec.price`). */
  usd?: number;
  /** Active time in seconds: model calls and tool calls, not waits. */
  wallClockSec?: number;
  toolCalls?: number;
}

/** Deliberate tool faults: a seeded rate per tool and the kind of fault. Injected faults never touch the sandbox. */
export interface FaultInjection {
  seed: number;
  rules: Array<{ tool: string; rate: number; fault: 'error' | 'timeout' | 'truncated' | 'nonzero' }>;
}

/**
 * `running` and `waiting` (for a message) are live; the rest are final. `terminated` and `timed_out`
 * are set by Keel's reconciler when Temporal ended the workflow outside Keel's code.
 */
export type SessionStatus =
  | 'running'
  | 'waiting'
  | 'budget_exhausted'
  | 'completed'
  | 'refused'
  | 'step_limit'
  | 'cancelled'
  | 'failed'
  | 'terminated'
  | 'timed_out';

/** Returned by the `status` query. */
export interface SessionState {
  status: SessionStatus;
  /** What a `waiting` (or `budget_exhausted`) session waits for. */
  waitingFor?: 'message' | 'approval' | 'budget' | 'admission';
  /** Calls waiting for a person's decision. */
  pendingApprovals?: Array<{ callId: string; tool: string; summary: string; since: string; reason?: string }>;
  /** The budget it stopped at, when `budget_exhausted`. */
  exhausted?: { budget: string; used: number; limit: number; reserve?: number };
  /** Its budgets, as added to since it started. */
  budgets?: Budgets;
  /** What it has spent, against its budgets. */
  spent?: { inputTokens: number; outputTokens: number; usd?: number; activeSec: number; toolCalls: number };
  /** Which workflow run of the session this is (1, then +1 per continue-as-new). */
  run?: number;
  step: number;
  toolCalls: number;
  lastTool?: string;
  cancelReason?: string;
}

/** The workflow's result. */
export interface SessionResult {
  sessionId: string;
  status: SessionStatus;
  steps: number;
  toolCalls: number;
  summary?: string;
  usage: TokenUsage;
  error?: string;
  /** What the session spent against its budgets (sessions with operator control). */
  spent?: SessionState['spent'];
}
