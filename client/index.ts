/**
 * Keel's client library: start, steer and wait for sessions from any Node
 * program. It loads `@temporalio/client` and Keel's pure types, nothing of the
 * worker side (no Docker, Postgres or worker runtime).
 *
 * ```ts
 * import { KeelClient } from 'keel/client';
 * const keel = await KeelClient.connect({ address: 'localhost:7233' });
 * const id = await keel.start({ task: 'fix the failing test', model: { provider: 'anthropic', model: 'claude-sonnet-4-5' } });
 * const result = await keel.result(id);
 * ```
 */
import { randomBytes } from 'node:crypto';
import { Client, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, WorkflowUpdateFailedError, type Connection, type WorkflowClientInterceptor } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { APPROVAL_UPDATE, BUDGET_UPDATE, CANCEL_SIGNAL, CLOSE_SIGNAL, MESSAGE_SIGNAL, SESSION_QUEUE, STATUS_QUERY } from '../common/constants';
import { DEFAULT_TENANT } from '../common/defaults';
import { SessionError } from '../common/errors';
import { progressOf, type Progress } from '../common/progress';
import { injectionProblems } from '../common/inject';
import { policyProblems } from '../common/policy';
import { sandboxMcpProblems } from '../common/mcp';
import { sandboxLimits, sandboxSpecProblems } from '../common/sandbox-spec';
import { SEARCH_ATTRIBUTES, startAttributes, startMemo } from '../common/search-attributes';
import { toolNames } from '../common/tools';
import { webhookProblems } from '../common/webhooks';
import type { Budgets, ModelSpec, SessionResult, SessionSpec, SessionState } from '../common/types';
import type { ApprovalAnswer, BudgetAddition } from '../workflows/operator';
import type { agentSession } from '../workflows/session';
import { connectTemporal, resolveConnectionOptions, type ConnectionOptions } from './connection';

export { ServiceError, SessionError } from '../common/errors';
export type { Budgets, FaultInjection, ModelSpec, SandboxSpec, ScriptTurn, SessionResult, SessionSpec, SessionState, SessionStatus } from '../common/types';
export type { ApprovalPolicy, PolicyRule } from '../common/policy';
export type { ConnectionOptions } from './connection';

/** One activity of a session in flight, as {@link KeelClient.activities} reports it. */
export interface ActivityInFlight {
  activityId: string;
  /** `callModel`, `runTool`, `provisionSandbox`, … */
  activity: string;
  /** The attempt running or scheduled next (1 for the first). */
  attempt: number;
  maximumAttempts?: number;
  /** Started and not yet finished (else scheduled, e.g. waiting for its next attempt). */
  running: boolean;
  /** Why the previous attempt failed. */
  lastFailure?: string;
  startedAt?: Date;
  nextAttemptAt?: Date;
  /** What its last heartbeat said it had done (a snapshot's upload, a restore), when it says. */
  progress?: Progress;
}

/** `temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED` (the proto package is not a dependency). */
const PENDING_ACTIVITY_STATE_STARTED = 2;
/** A protobuf Timestamp (its seconds may be a Long, whose string form is the number). */
const dateOf = (t: { seconds?: unknown; nanos?: number | null }): Date => new Date(Number(String(t.seconds ?? 0)) * 1000 + Math.floor((t.nanos ?? 0) / 1e6));

/** The progress in a heartbeat's first detail, if it holds one (anything else, or undecodable, is none). */
function progressField(payload: Parameters<typeof defaultPayloadConverter.fromPayload>[0] | undefined): { progress?: Progress } {
  if (!payload) return {};
  try {
    const progress = progressOf(defaultPayloadConverter.fromPayload(payload));
    return progress ? { progress } : {};
  } catch {
    return {};
  }
}

export function newSessionId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `s-${stamp}-${randomBytes(3).toString('hex')}`;
}

export class KeelClient {
  private constructor(
    /** The Temporal client underneath, for what this library does not cover. */
    readonly temporal: Client,
    private readonly connection: Connection,
  ) {}

  private searchableAnswer?: Promise<boolean>;

  /**
   * Connect to Temporal (options, else `TEMPORAL_ADDRESS` / `TEMPORAL_NAMESPACE`, else localhost:7233 / default).
   * `interceptors` wrap workflow calls, e.g. `OpenTelemetryWorkflowClientInterceptor` to start a trace per session.
   */
  static async connect(opts: ConnectionOptions & { interceptors?: WorkflowClientInterceptor[] } = {}): Promise<KeelClient> {
    const o = resolveConnectionOptions(opts);
    const connection = await connectTemporal(o.address, o.connectTimeoutMs);
    const interceptors = opts.interceptors?.length ? { interceptors: { workflow: opts.interceptors } } : {};
    return new KeelClient(new Client({ connection, namespace: o.namespace, ...interceptors }), connection);
  }

  /** Start a session. The session id is the workflow id: starting an existing one is refused. */
  async start(spec: SessionSpec, opts: { sessionId?: string } = {}): Promise<string> {
    validateSpec(spec);
    const sessionId = opts.sessionId ?? newSessionId();
    try {
      await this.temporal.workflow.start<typeof agentSession>('agentSession', {
        workflowId: sessionId,
        taskQueue: SESSION_QUEUE,
        args: [spec],
        // A session id is used once, even after the session ended.
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        // Whose session it is and what it was asked, readable (describe, the Temporal UI) before its first event.
        memo: startMemo(spec, spec.tenant ?? DEFAULT_TENANT),
        ...((await this.searchable()) ? { typedSearchAttributes: startAttributes(spec, spec.tenant ?? DEFAULT_TENANT) } : {}),
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new SessionError(`session ${sessionId} already exists; pick another id`, 'conflict');
      }
      throw err;
    }
    return sessionId;
  }

  /**
   * Whether the namespace has Keel's search attributes registered (asked once per client). Starting a
   * workflow with an unregistered attribute is refused, so sessions carry them only where they exist.
   */
  private searchable(): Promise<boolean> {
    this.searchableAnswer ??= this.connection.operatorService
      .listSearchAttributes({ namespace: this.temporal.options.namespace })
      .then((r) => SEARCH_ATTRIBUTES.every((k) => r.customAttributes?.[k.name] !== undefined))
      .catch(() => false);
    return this.searchableAnswer;
  }

  /** Add a user message; the model sees it on its next turn (a sleeping session wakes). */
  async message(sessionId: string, text: string): Promise<void> {
    await this.guard(sessionId, () => this.handle(sessionId).signal<[string]>(MESSAGE_SIGNAL, text));
  }

  /** Stop a session: the running command is killed, the container removed, the reason recorded. */
  async cancel(sessionId: string, reason = 'cancelled by user'): Promise<void> {
    await this.guard(sessionId, () => this.handle(sessionId).signal<[string?]>(CANCEL_SIGNAL, reason));
  }

  /**
   * End a kept-alive session: it stops waiting for messages (one that is mid-turn finishes the turn
   * first). A session that is not kept alive ends when its model is done anyway.
   */
  async closeSession(sessionId: string): Promise<void> {
    await this.guard(sessionId, () => this.handle(sessionId).signal<[]>(CLOSE_SIGNAL));
  }

  /**
   * Let a call that waits for approval run. With `remember`, the same call with exactly the same
   * arguments runs without asking for the rest of the session. Refused (SessionError) when no
   * such call waits or it was already answered.
   */
  async approve(sessionId: string, callId: string, opts: { by: string; remember?: boolean }): Promise<void> {
    await this.answer(sessionId, { callId, decision: 'approve', by: opts.by, ...(opts.remember ? { remember: true } : {}) });
  }

  /** Refuse a call that waits for approval; the model gets `reason` as the call's result. */
  async deny(sessionId: string, callId: string, opts: { by: string; reason: string }): Promise<void> {
    if (!opts.reason?.trim()) throw new SessionError('a denial gives the model a reason');
    await this.answer(sessionId, { callId, decision: 'deny', by: opts.by, reason: opts.reason });
  }

  /** Add to a session's budgets; one stopped at a budget (`budget_exhausted`) resumes where it stopped. */
  async addBudget(sessionId: string, add: Budgets, opts: { by: string }): Promise<void> {
    const problems = budgetProblems(add, 'add');
    if (problems.length || Object.keys(add).length === 0) throw new SessionError(problems.join('; ') || 'add at least one budget');
    await this.update(sessionId, BUDGET_UPDATE, { add, by: opts.by } satisfies BudgetAddition);
  }

  /**
   * Resolve as soon as the session waits for a person (a message or an approval) or stops at a
   * budget (`idle: true`, with its state), or ends (`idle: false`, with its result). A session
   * queued for its tenant's cap is not idle: it starts by itself. Polls every `pollMs`.
   */
  async untilIdle(sessionId: string, opts: { pollMs?: number } = {}): Promise<{ idle: true; state: SessionState } | { idle: false; result: SessionResult }> {
    const ended = this.result(sessionId).then((result) => ({ idle: false as const, result }));
    let done = false;
    const idle = (async () => {
      while (!done) {
        const state = await this.status(sessionId).catch(() => undefined);
        if ((state?.status === 'waiting' && state.waitingFor !== 'admission') || state?.status === 'budget_exhausted') return { idle: true as const, state };
        await new Promise((r) => setTimeout(r, opts.pollMs ?? 500));
      }
      return new Promise<never>(() => undefined);
    })();
    try {
      return await Promise.race([ended, idle]);
    } finally {
      done = true;
      ended.catch(() => undefined);
    }
  }

  /** The live state of a running session (step, tool calls, status). */
  async status(sessionId: string): Promise<SessionState> {
    return this.guard(sessionId, () => this.handle(sessionId).query<SessionState>(STATUS_QUERY));
  }

  /**
   * The session's activities in flight (model calls, tool calls, sandbox starts): what runs, for
   * how long, and for one being retried, what failed and when the next attempt is. Quick store
   * calls run as local activities and do not appear.
   */
  async activities(sessionId: string): Promise<ActivityInFlight[]> {
    const { raw } = await this.guard(sessionId, () => this.handle(sessionId).describe());
    return (raw.pendingActivities ?? []).map((a) => ({
      activityId: a.activityId ?? '',
      activity: a.activityType?.name ?? '',
      attempt: a.attempt ?? 1,
      ...(a.maximumAttempts ? { maximumAttempts: a.maximumAttempts } : {}),
      running: a.state === PENDING_ACTIVITY_STATE_STARTED,
      ...(a.lastFailure?.message ? { lastFailure: a.lastFailure.message } : {}),
      ...(a.lastStartedTime ? { startedAt: dateOf(a.lastStartedTime) } : {}),
      ...(a.nextAttemptScheduleTime ? { nextAttemptAt: dateOf(a.nextAttemptScheduleTime) } : {}),
      ...progressField(a.heartbeatDetails?.payloads?.[0]),
    }));
  }

  /** Wait for the session to end and return its result. */
  async result(sessionId: string): Promise<SessionResult> {
    return this.guard(sessionId, () => this.handle(sessionId).result());
  }

  async close(): Promise<void> {
    await this.connection.close();
  }

  private async answer(sessionId: string, a: ApprovalAnswer): Promise<void> {
    if (!a.by?.trim()) throw new SessionError('an answer says who gave it (by)');
    await this.update(sessionId, APPROVAL_UPDATE, a);
  }

  /** Run an update; a validator's refusal becomes a SessionError with its message. */
  private async update(sessionId: string, name: string, arg: unknown): Promise<void> {
    try {
      await this.guard(sessionId, () => this.handle(sessionId).executeUpdate<void, [unknown]>(name, { args: [arg] }));
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) throw new SessionError(`${sessionId}: ${(err.cause as Error | undefined)?.message ?? err.message}`, 'conflict');
      throw err;
    }
  }

  private handle(sessionId: string) {
    return this.temporal.workflow.getHandle<typeof agentSession>(sessionId);
  }

  private async guard<T>(sessionId: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        // Signals and updates to a session that has ended are "not found" too: say which it is.
        const ended = await this.handle(sessionId).describe().then((d) => d.status.name, () => undefined);
        if (ended && ended !== 'RUNNING') throw new SessionError(`session ${sessionId} has ended (${ended.toLowerCase()})`, 'ended');
        throw new SessionError(`no session ${sessionId}`, 'not_found');
      }
      throw err;
    }
  }
}

const PROVIDERS: ReadonlyArray<ModelSpec['provider']> = ['scripted', 'anthropic', 'openai', 'openai-compatible'];

/** Refuse a spec the workflow could not run, before it reaches Temporal. */
export function validateSpec(spec: SessionSpec): void {
  if (!spec.task?.trim()) throw new SessionError('a session needs a task');
  if (!PROVIDERS.includes(spec.model?.provider)) {
    throw new SessionError(`unknown model provider "${spec.model?.provider}"; use one of ${PROVIDERS.join(', ')}`);
  }
  if (spec.model.provider === 'scripted' && !spec.model.script?.length) {
    throw new SessionError('a scripted model needs a script with at least one turn');
  }
  for (const field of ['maxSteps', 'idleTimeoutSec', 'stepsPerRun'] as const) {
    const v = spec[field];
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) throw new SessionError(`${field} must be a positive integer`);
  }
  if (spec.model.contextTokens !== undefined && !(Number.isInteger(spec.model.contextTokens) && spec.model.contextTokens >= 4096)) {
    throw new SessionError('model.contextTokens must be an integer of at least 4096');
  }
  if (spec.messages !== undefined && !(Array.isArray(spec.messages) && spec.messages.every((m) => typeof m === 'string'))) {
    throw new SessionError('messages must be a list of strings');
  }
  if (spec.fork !== undefined) {
    const f = spec.fork;
    if (typeof f.from !== 'string' || !f.from) throw new SessionError('fork.from must name the session forked');
    for (const field of ['atStep', 'throughSeq'] as const) {
      if (!(Number.isInteger(f[field]) && f[field] > 0)) throw new SessionError(`fork.${field} must be a positive integer`);
    }
  }
  if (spec.workspace !== undefined) {
    const w = spec.workspace;
    if (typeof w?.snapshot !== 'string' || !/^[0-9a-f]{64}$/.test(w.snapshot)) throw new SessionError('workspace.snapshot must be a snapshot id (64 lowercase hex digits) stored with prepareWorkspace');
    for (const field of ['files', 'bytes'] as const) {
      if (!(Number.isInteger(w[field]) && w[field] >= 0)) throw new SessionError(`workspace.${field} must be a whole number`);
    }
    if (spec.fork !== undefined) throw new SessionError('a fork starts from the files of the session it forks: give workspace or fork, not both');
    const diskMb = sandboxLimits(spec.sandbox).diskMb;
    if (w.bytes > diskMb * 1024 * 1024) throw new SessionError(`the workspace holds ${w.bytes} bytes, more than the sandbox's ${diskMb} MiB /workspace; raise sandbox.diskMb`);
  }
  const operator = [
    ...policyProblems(spec.policy, toolNames),
    ...budgetProblems(spec.budgets, 'budgets'),
    ...injectionProblems(spec.inject, toolNames),
    ...(spec.webhook !== undefined ? webhookProblems(spec.webhook) : []),
  ];
  if (spec.model.price !== undefined) {
    const p = spec.model.price;
    if (!(p.inputPerMTok >= 0 && p.outputPerMTok >= 0 && Number.isFinite(p.inputPerMTok + p.outputPerMTok))) operator.push('model.price needs inputPerMTok and outputPerMTok, dollars per million tokens (0 or more)');
  }
  if (operator.length) throw new SessionError(operator.join('; '));
  if (spec.rerunOf !== undefined && (typeof spec.rerunOf !== 'string' || !spec.rerunOf.trim())) throw new SessionError('rerunOf must name a session');
  const problems = [...sandboxSpecProblems(spec.sandbox), ...sandboxMcpProblems(spec.mcpSandbox, spec.mcp ?? [])];
  if (problems.length) throw new SessionError(problems.join('; '));
}

const BUDGETS: ReadonlyArray<keyof Budgets> = ['inputTokens', 'outputTokens', 'usd', 'wallClockSec', 'toolCalls'];

/** What is wrong with a set of budgets (or budget additions); empty when they are fine. */
export function budgetProblems(budgets: Budgets | undefined, where: string): string[] {
  if (budgets === undefined) return [];
  if (typeof budgets !== 'object' || budgets === null) return [`${where} must be an object`];
  const problems: string[] = [];
  for (const [k, v] of Object.entries(budgets)) {
    if (!BUDGETS.includes(k as keyof Budgets)) problems.push(`${where}.${k} is not a budget (${BUDGETS.join(', ')})`);
    else if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) problems.push(`${where}.${k} must be a positive number`);
    else if (k !== 'usd' && !Number.isInteger(v)) problems.push(`${where}.${k} must be a whole number`);
  }
  return problems;
}

/** Parse `provider:model`, e.g. `anthropic:claude-sonnet-4-5` or `openai-compatible:llama3.1`. */
export function parseModel(text: string): { provider: ModelSpec['provider']; model: string } {
  const i = text.indexOf(':');
  const provider = (i < 0 ? text : text.slice(0, i)) as ModelSpec['provider'];
  const model = i < 0 ? '' : text.slice(i + 1);
  if (!PROVIDERS.includes(provider) || !model) {
    throw new SessionError(`--model takes provider:model (anthropic, openai or openai-compatible), not "${text}"`);
  }
  return { provider, model };
}
