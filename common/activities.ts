/**
 * The activity interfaces the session workflow calls. Each factory in
 * `activities/` returns an object that satisfies one of these, so workflows
 * depend on types only, never on activity code.
 */
import type { Message, ModelSpec, ModelTurn, SandboxHandle, SandboxSpec, SessionEvent, ToolCall, ToolResult } from './types';

export interface SandboxActivities {
  /** Create (or find, on retry) the session's container. Runs on the shared sandbox queue. */
  provisionSandbox(input: { sessionId: string; spec?: SandboxSpec }): Promise<SandboxHandle>;
  /** Run one validated tool call in the session's container. Runs on the owning host's queue. */
  runTool(input: { sessionId: string; handle: SandboxHandle; call: ToolCall }): Promise<ToolResult>;
  /** Remove the session's container and workspace volume. Idempotent. */
  destroySandbox(input: { sessionId: string }): Promise<{ removed: boolean }>;
}

export interface ModelActivities {
  callModel(input: { sessionId: string; model: ModelSpec; system: string; messages: Message[] }): Promise<ModelTurn>;
}

export interface StoreActivities {
  /** Append events; a retried write of the same seq is ignored. */
  recordEvents(input: { sessionId: string; events: SessionEvent[] }): Promise<void>;
}
