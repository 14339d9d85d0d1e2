/**
 * Types shared by workflows, activities, workers and the CLI.
 *
 * This folder (`common/`) imports nothing from Node: workflow code runs in
 * Temporal's deterministic V8 sandbox and may import it.
 */

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
}

export interface ToolCall {
  /** Unique within the session (the model's own id, or one the workflow assigns). */
  id: string;
  name: string;
  input: unknown;
}

export interface ToolResult {
  callId: string;
  name: string;
  /** false when the arguments were invalid, the tool failed, or the command exited non-zero. */
  ok: boolean;
  /** What the model sees. Already capped; says how much was cut. */
  output: string;
  exitCode?: number;
  durationMs?: number;
  /** Machine-readable reason when the tool itself failed, e.g. `InvalidArguments`, `UnknownTool`, `Timeout`, `NotFound`. */
  error?: string;
  /** Set when the call was asked to snapshot and changed the sandbox's files. */
  snapshot?: SnapshotInfo;
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

/** What the model activity returns for one call. */
export interface ModelTurn {
  text?: string;
  toolCalls: ToolCall[];
  finishReason: string;
  usage: TokenUsage;
  durationMs: number;
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
}

export type SessionStatus =
  | 'running'
  | 'completed'
  | 'step_limit'
  | 'cancelled'
  | 'failed';

/** Returned by the `status` query. */
export interface SessionState {
  status: SessionStatus;
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
}
