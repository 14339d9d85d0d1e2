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
import { Client, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Connection } from '@temporalio/client';
import { CANCEL_SIGNAL, CLOSE_SIGNAL, MESSAGE_SIGNAL, SESSION_QUEUE, STATUS_QUERY } from '../common/constants';
import { SessionError } from '../common/errors';
import { sandboxSpecProblems } from '../common/sandbox-spec';
import type { ModelSpec, SessionResult, SessionSpec, SessionState } from '../common/types';
import type { agentSession } from '../workflows/session';
import { connectTemporal, resolveConnectionOptions, type ConnectionOptions } from './connection';

export { ServiceError, SessionError } from '../common/errors';
export type { ModelSpec, SandboxSpec, ScriptTurn, SessionResult, SessionSpec, SessionState, SessionStatus } from '../common/types';
export type { ConnectionOptions } from './connection';

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

  /** Connect to Temporal (options, else `TEMPORAL_ADDRESS` / `TEMPORAL_NAMESPACE`, else localhost:7233 / default). */
  static async connect(opts: ConnectionOptions = {}): Promise<KeelClient> {
    const o = resolveConnectionOptions(opts);
    const connection = await connectTemporal(o.address, o.connectTimeoutMs);
    return new KeelClient(new Client({ connection, namespace: o.namespace }), connection);
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
      });
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new SessionError(`session ${sessionId} already exists; pick another id`);
      }
      throw err;
    }
    return sessionId;
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
   * Resolve as soon as the session waits for a message (`idle: true`, with its state) or ends
   * (`idle: false`, with its result). Polls the session's status every `pollMs`.
   */
  async untilIdle(sessionId: string, opts: { pollMs?: number } = {}): Promise<{ idle: true; state: SessionState } | { idle: false; result: SessionResult }> {
    const ended = this.result(sessionId).then((result) => ({ idle: false as const, result }));
    let done = false;
    const idle = (async () => {
      while (!done) {
        const state = await this.status(sessionId).catch(() => undefined);
        if (state?.status === 'waiting') return { idle: true as const, state };
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

  /** Wait for the session to end and return its result. */
  async result(sessionId: string): Promise<SessionResult> {
    return this.guard(sessionId, () => this.handle(sessionId).result());
  }

  async close(): Promise<void> {
    await this.connection.close();
  }

  private handle(sessionId: string) {
    return this.temporal.workflow.getHandle<typeof agentSession>(sessionId);
  }

  private async guard<T>(sessionId: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new SessionError(`no session ${sessionId}`);
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
  if (spec.rerunOf !== undefined && (typeof spec.rerunOf !== 'string' || !spec.rerunOf.trim())) throw new SessionError('rerunOf must name a session');
  const problems = sandboxSpecProblems(spec.sandbox);
  if (problems.length) throw new SessionError(problems.join('; '));
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
