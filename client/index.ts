/**
 * A small client library for Keel sessions: start, steer and wait.
 *
 * ```ts
 * const keel = await KeelClient.connect(loadConfig());
 * const id = await keel.start({ task: 'fix the failing test', model: { provider: 'anthropic', model: 'claude-sonnet-4-5' } });
 * const result = await keel.result(id);
 * ```
 */
import { randomBytes } from 'node:crypto';
import { Client, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Connection } from '@temporalio/client';
import { CANCEL_SIGNAL, MESSAGE_SIGNAL, SESSION_QUEUE, STATUS_QUERY, WORKFLOW_TYPE } from '../common/constants';
import { sandboxSpecProblems } from '../common/sandbox-spec';
import type { SessionResult, SessionSpec, SessionState } from '../common/types';
import type { KeelConfig } from '../workers/config';
import { connectTemporalClient } from '../workers/services';

/** A request Keel refuses: unknown session, duplicate id, bad spec. */
export class SessionError extends Error {
  override name = 'SessionError';
}

export function newSessionId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `s-${stamp}-${randomBytes(3).toString('hex')}`;
}

export class KeelClient {
  private constructor(
    readonly temporal: Client,
    private readonly connection: Connection,
  ) {}

  static async connect(config: KeelConfig): Promise<KeelClient> {
    const connection = await connectTemporalClient(config);
    return new KeelClient(new Client({ connection, namespace: config.temporalNamespace }), connection);
  }

  /** Start a session. The session id is the workflow id: starting an existing one is refused. */
  async start(spec: SessionSpec, opts: { sessionId?: string } = {}): Promise<string> {
    validateSpec(spec);
    const sessionId = opts.sessionId ?? newSessionId();
    try {
      await this.temporal.workflow.start(WORKFLOW_TYPE, {
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

  async message(sessionId: string, text: string): Promise<void> {
    await this.guard(sessionId, () => this.temporal.workflow.getHandle(sessionId).signal(MESSAGE_SIGNAL, text));
  }

  async cancel(sessionId: string, reason = 'cancelled by user'): Promise<void> {
    await this.guard(sessionId, () => this.temporal.workflow.getHandle(sessionId).signal(CANCEL_SIGNAL, reason));
  }

  async status(sessionId: string): Promise<SessionState> {
    return this.guard(sessionId, () => this.temporal.workflow.getHandle(sessionId).query<SessionState>(STATUS_QUERY));
  }

  /** Wait for the session to end and return its result. */
  async result(sessionId: string): Promise<SessionResult> {
    return this.guard(sessionId, () => this.temporal.workflow.getHandle(sessionId).result() as Promise<SessionResult>);
  }

  async close(): Promise<void> {
    await this.connection.close();
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

/** Refuse a spec the workflow could not run, before it reaches Temporal. */
export function validateSpec(spec: SessionSpec): void {
  if (!spec.task?.trim()) throw new SessionError('a session needs a task');
  const providers = ['scripted', 'anthropic', 'openai', 'openai-compatible'];
  if (!providers.includes(spec.model?.provider)) {
    throw new SessionError(`unknown model provider "${spec.model?.provider}"; use one of ${providers.join(', ')}`);
  }
  if (spec.model.provider === 'scripted' && !spec.model.script?.length) {
    throw new SessionError('a scripted model needs a script with at least one turn');
  }
  if (spec.maxSteps !== undefined && !(Number.isInteger(spec.maxSteps) && spec.maxSteps > 0)) {
    throw new SessionError('maxSteps must be a positive integer');
  }
  const problems = sandboxSpecProblems(spec.sandbox);
  if (problems.length) throw new SessionError(problems.join('; '));
}

/** Parse `provider:model`, e.g. `anthropic:claude-sonnet-4-5` or `openai-compatible:llama3.1`. */
export function parseModel(text: string): { provider: SessionSpec['model']['provider']; model: string } {
  const i = text.indexOf(':');
  const provider = (i < 0 ? text : text.slice(0, i)) as SessionSpec['model']['provider'];
  const model = i < 0 ? '' : text.slice(i + 1);
  if (!['anthropic', 'openai', 'openai-compatible', 'scripted'].includes(provider) || !model) {
    throw new SessionError(`--model takes provider:model (anthropic, openai or openai-compatible), not "${text}"`);
  }
  return { provider, model };
}
