/**
 * `keel demo` and `keel run`: start a session, show its steps as they happen,
 * then its timeline from Postgres and where to look next.
 */
import { readFileSync } from 'node:fs';
import { ApplicationFailure } from '@temporalio/common';
import { resolveModelConfig } from '../activities/model/config';
import { languageModelFor } from '../activities/model/providers';
import { KeelClient, parseModel } from '../client';
import { SessionError } from '../common/errors';
import type { EventRow } from '../common/events';
import type { SandboxMcpServer } from '../common/mcp';
import type { EgressRule, SandboxSpec, ScriptTurn, SessionResult, SessionSpec, SessionStatus } from '../common/types';
import { follow, stepsOf } from '../inspect';
import { getEvents, type Sql } from '../store';
import { clientTracingInterceptors, startTracing } from '../telemetry/tracing';
import type { KeelConfig } from '../workers/config';
import { connectDatabase } from '../workers/services';
import { createWorkers, type KeelWorkers } from '../workers/worker';
import { DEMO_TASK, demoScript } from './demo-script';
import { describeCall } from '../common/tools';
import { formatStep, formatTimeline } from './timeline';
import { livePrinter } from './live-text';
import { watchActivities } from './status';
import { print, printJson } from './terminal';

export interface RunOptions {
  json?: boolean;
  /** Run a worker in this process for the session's lifetime. */
  worker?: boolean;
  detach?: boolean;
  sessionId?: string;
}

export function demoSpec(): SessionSpec {
  return { task: DEMO_TASK, model: { provider: 'scripted', model: 'demo', script: demoScript }, maxSteps: 20 };
}

export function runSpec(
  task: string,
  opts: {
    model?: string;
    script?: string;
    baseUrl?: string;
    maxSteps?: string;
    keepAlive?: boolean;
    idleTimeout?: string;
    contextTokens?: string;
    allowNet?: string[];
    mcp?: string[];
    /** A JSON file `{"mcpServers": {...}}` of stdio MCP servers to run inside the sandbox (`SessionSpec.mcpSandbox`). */
    mcpSandbox?: string;
    /** The sandbox image (a custom one from `keel image build`). @default the sandbox host's */
    image?: string;
  },
): SessionSpec {
  let model: SessionSpec['model'];
  if (opts.script) {
    let script: ScriptTurn[];
    try {
      script = JSON.parse(readFileSync(opts.script, 'utf8')) as ScriptTurn[];
    } catch (err) {
      throw new SessionError(`cannot read script ${opts.script}: ${(err as Error).message}`);
    }
    if (!Array.isArray(script)) throw new SessionError(`script ${opts.script} must be a JSON array of turns`);
    model = { provider: 'scripted', model: opts.script, script };
  } else if (opts.model) {
    model = { ...parseModel(opts.model), ...(opts.baseUrl ? { baseURL: opts.baseUrl } : {}) };
  } else {
    throw new SessionError('say which model drives the session: --model provider:model, or --script file.json');
  }
  const num = (v: string | undefined): number | undefined => (v === undefined ? undefined : Number(v));
  const maxSteps = num(opts.maxSteps);
  const idleTimeoutSec = num(opts.idleTimeout);
  const contextTokens = num(opts.contextTokens);
  const sandbox: SandboxSpec | undefined = opts.allowNet?.length || opts.image
    ? {
        ...(opts.image ? { image: opts.image } : {}),
        ...(opts.allowNet?.length ? { network: { allow: opts.allowNet.map(egressRule) } } : {}),
      }
    : undefined;
  return {
    task,
    model: { ...model, ...(contextTokens !== undefined ? { contextTokens } : {}) },
    ...(maxSteps !== undefined ? { maxSteps } : {}),
    ...(opts.keepAlive ? { keepAlive: true } : {}),
    ...(idleTimeoutSec !== undefined ? { idleTimeoutSec } : {}),
    ...(sandbox ? { sandbox } : {}),
    ...(opts.mcp?.length ? { mcp: [...new Set(opts.mcp)] } : {}),
    ...(opts.mcpSandbox ? { mcpSandbox: readSandboxMcp(opts.mcpSandbox) } : {}),
  };
}

/**
 * `--mcp-sandbox file.json`: the shape other MCP clients use, `{"mcpServers": {"<name>": {"command", "args", "env"}}}`
 * (plus `timeoutSec`), stdio servers only. The client checks the servers themselves (common/mcp.ts).
 */
export function readSandboxMcp(file: string): Record<string, SandboxMcpServer> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new SessionError(`--mcp-sandbox ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  const servers = (raw as { mcpServers?: unknown } | null)?.mcpServers;
  if (!servers || typeof servers !== 'object' || Array.isArray(servers)) {
    throw new SessionError(`--mcp-sandbox ${file}: expected {"mcpServers": {"<name>": {"command": "...", "args": [...]}}}`);
  }
  for (const [name, s] of Object.entries(servers as Record<string, unknown>)) {
    if (s && typeof s === 'object' && ('url' in s || 'headers' in s)) {
      throw new SessionError(`--mcp-sandbox ${file}: server "${name}": only stdio servers ("command") run inside the sandbox; an HTTP server ("url") goes in the workers' KEEL_MCP_CONFIG (--mcp)`);
    }
  }
  return servers as Record<string, SandboxMcpServer>;
}

/**
 * `--allow-net host[:port[,port…]]` as an allow entry. Only the shape is read here: the client checks the
 * spec (common/sandbox-spec.ts) and says what is wrong with a name or a port.
 */
export function egressRule(text: string): EgressRule {
  const colon = text.lastIndexOf(':');
  if (colon < 0) return { host: text };
  return { host: text.slice(0, colon), ports: text.slice(colon + 1).split(',').map((p) => (/^\d+$/.test(p) ? Number(p) : Number.NaN)) };
}

/** Start a session and, unless detached, follow it to the end. Returns the process exit code. */
export async function runSession(config: KeelConfig, spec: SessionSpec, opts: RunOptions): Promise<number> {
  if (opts.worker && !opts.detach) checkModelConfigured(spec, config);
  const client = await connectClient(config);
  const sql = opts.detach ? undefined : await connectDatabase(config);
  const started: { sessionId?: string } = {};
  const stopInterrupt = onInterrupt((signal) => {
    const id = started.sessionId;
    console.error(
      id
        ? `\nkeel: ${signal}: stopped following; session ${id} goes on durably when a worker runs (\`npx keel wait ${id}\` to follow, \`npx keel cancel ${id}\` to stop it)`
        : `\nkeel: ${signal}: stopped`,
    );
  });
  try {
    const following = withWorker(config, Boolean(opts.worker && !opts.detach), () => startAndFollow(config, client, sql, spec, opts, started));
    // After an interrupt the follower may fail as its connections close: that is not news.
    following.catch(() => undefined);
    return await Promise.race([following, stopInterrupt.interrupted]);
  } finally {
    stopInterrupt();
    await sql?.end({ timeout: 5 });
    await client.close();
  }
}

/**
 * With the worker in this process, a model it cannot call fails here, before a sandbox is
 * provisioned or a session recorded (a missing API key used to fail at the first model call).
 * Builds the SDK's model object only: no request is sent.
 */
export function checkModelConfigured(spec: SessionSpec, config: KeelConfig): void {
  try {
    languageModelFor(spec.model, resolveModelConfig(config.env));
  } catch (err) {
    if (err instanceof ApplicationFailure) throw new SessionError(`model ${spec.model.provider}:${spec.model.model} cannot be used: ${err.message}`);
    throw err;
  }
}

/** Run `fn` with a worker of every role in this process when `enabled`; the worker stops when `fn` is done. */
export async function withWorker<T>(config: KeelConfig, enabled: boolean, fn: () => Promise<T>): Promise<T> {
  const workers: KeelWorkers | undefined = enabled ? await createWorkers(config, { role: 'all' }) : undefined;
  const running = workers?.run();
  try {
    return await fn();
  } finally {
    if (workers) {
      await workers.shutdown();
      await running;
    }
  }
}

/** Start the session and, unless detached, follow it to its end or its first wait. */
async function startAndFollow(config: KeelConfig, client: KeelClient, sql: Sql | undefined, spec: SessionSpec, opts: RunOptions, started: { sessionId?: string }): Promise<number> {
  const sessionId = await client.start(spec, { sessionId: opts.sessionId });
  started.sessionId = sessionId;
  const ui = `${config.temporalUi}/namespaces/${config.temporalNamespace}/workflows/${sessionId}`;
  if (opts.detach) {
    print(opts.json ? JSON.stringify({ sessionId, status: 'running', temporalUi: ui }) : sessionId);
    return 0;
  }
  if (!opts.json) {
    print(`session ${sessionId} started`);
    print(`  task: ${spec.task}`);
    print(`  model: ${spec.model.provider}:${spec.model.model}\n`);
  }
  // A kept-alive session does not end when its model is done: follow it until it waits for a message.
  const outcome = spec.keepAlive ? client.untilIdle(sessionId) : client.result(sessionId).then((result) => ({ idle: false as const, result }));
  // Retries and long work between events (on stderr with --json, whose stdout is one object).
  const stopWatching = watchActivities(client, sessionId, (line) => (opts.json ? console.error(line) : print(line)));
  try {
    if (opts.json) await follow(sql!, sessionId, progressPrinter(true), { stop: outcome });
    else {
      const live = livePrinter(progressPrinter(false));
      await follow(sql!, sessionId, (e) => live.onEvent(e), { stop: outcome, onDelta: (d) => live.onDelta(d) });
    }
  } finally {
    stopWatching();
  }
  const done = await outcome;
  if (done.idle) {
    const text = (await getEvents(sql!, sessionId, { types: ['model.call'] })).at(-1);
    const last = text?.type === 'model.call' ? text.data.text : undefined;
    if (opts.json) printJson({ sessionId, status: 'waiting', step: done.state.step, text: last, temporalUi: ui });
    else {
      if (last) print(`\n${last}`);
      print(`\nsession ${sessionId} is waiting for a message (durably; it needs a running \`keel worker\` to answer):`);
      print(`  npx keel message ${sessionId} "…"     continue it`);
      print(`  npx keel wait ${sessionId} --until-idle     follow it until it waits again`);
      print(`  npx keel close ${sessionId}     end it`);
    }
    return exitCodeFor('waiting');
  }
  const result = done.result;
  const events = await getEvents(sql!, sessionId);
  if (opts.json) {
    printJson({ ...result, steps: stepsOf(events), modelTurns: result.steps, events: events.length, temporalUi: ui });
  } else {
    printEnd(result, events, ui);
  }
  return exitCodeFor(result.status);
}

/**
 * Ctrl-C or SIGTERM while following: say what happens to the session, then let the command end
 * (with 130 or 143). The session is durable; only this process stops watching it. Before, the
 * in-process worker shut down on the signal and the command waited for a result forever.
 */
function onInterrupt(report: (signal: NodeJS.Signals) => void): { (): void; interrupted: Promise<number> } {
  let handler: (signal: NodeJS.Signals) => void = () => undefined;
  const interrupted = new Promise<number>((resolve) => {
    handler = (signal) => {
      report(signal);
      resolve(signal === 'SIGINT' ? 130 : 143);
    };
  });
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  const stop = () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
  return Object.assign(stop, { interrupted });
}

/** The client for a CLI command, connected as the config says. */
/** A client; with tracing configured, each session start, signal and update begins a trace (service `serviceName`). */
export function connectClient(config: KeelConfig, serviceName = 'keel-cli'): Promise<KeelClient> {
  if (config.tracesUrl) startTracing({ url: config.tracesUrl, serviceName: config.serviceName ?? serviceName });
  return KeelClient.connect({ address: config.temporalAddress, namespace: config.temporalNamespace, interceptors: clientTracingInterceptors() });
}

/** Run `fn` with a connected client, closed afterwards. */
export async function withClient<T>(config: KeelConfig, fn: (client: KeelClient) => Promise<T>): Promise<T> {
  const client = await connectClient(config);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** Prints each tool step as its result is recorded, with the arguments of its call. */
export function progressPrinter(json: boolean): (e: EventRow) => void {
  const calls = new Map<string, EventRow>();
  return (e) => {
    // A fork's copy of its original's transcript was shown when the original ran.
    if (json || (e.data as { copiedFrom?: unknown }).copiedFrom) return;
    // The last turn's text is the summary, printed at the end.
    if (e.type === 'model.call' && e.data.toolCalls.length > 0 && e.data.text) print(`  · ${e.data.text}`);
    if (e.type === 'tool.call') calls.set(e.data.callId, e);
    if (e.type === 'approval.requested') {
      print(`  ? call ${e.data.callId} waits for approval: ${e.data.tool} ${describeCall(e.data.tool, e.data.input)}${e.data.reason ? ` (${e.data.reason})` : ''}`);
      print(`    npx keel approve ${e.sessionId} ${e.data.callId} [--remember]   or   npx keel deny ${e.sessionId} ${e.data.callId} --reason "…"`);
    }
    if (e.type === 'approval.decided') print(`  ${e.data.decision === 'approve' ? '✓' : '✗'} call ${e.data.callId} ${e.data.decision === 'timeout' ? 'timed out' : `${e.data.decision}d by ${e.data.by}`}`);
    if (e.type === 'budget.exhausted') print(`  ! stopped at the ${e.data.budget} budget (${e.data.used} of ${e.data.limit}): npx keel budget ${e.sessionId} --add-…`);
    if (e.type === 'session.admission' && e.data.outcome !== 'admitted') print(`  ! ${e.data.outcome}: tenant ${e.data.tenant} runs ${e.data.running} of ${e.data.max} sessions`);
    if (e.type === 'tool.result') {
      const call = calls.get(e.data.callId);
      for (const step of stepsOf(call ? [call, e] : [e])) print(formatStep(step));
    }
  };
}

function printEnd(result: SessionResult, events: EventRow[], ui: string): void {
  print(`\nsession ${result.sessionId} ${result.status}: ${result.steps} model turns, ${result.toolCalls} tool calls, ` +
    `${result.usage.inputTokens} in / ${result.usage.outputTokens} out tokens`);
  if (result.summary) print(`\n${result.summary}`);
  if (result.error) print(`\nerror: ${result.error}`);
  const ended = events.find((e) => e.type === 'session.ended');
  if (result.status === 'refused' && ended?.type === 'session.ended' && ended.data.reason) print(`\nrefused: ${ended.data.reason}`);
  print('\ntimeline (from Postgres):');
  for (const line of formatTimeline(events)) print(line);
  const changed = events.filter((e): e is Extract<EventRow, { type: 'tool.result' }> => e.type === 'tool.result' && e.data.snapshot !== undefined).at(-1);
  print(`\nnext:\n  npx keel show ${result.sessionId}     the timeline again (--json for all of it)`);
  if (changed) print(`  npx keel diff ${result.sessionId} --step ${changed.data.step}     what that step changed in the sandbox`);
  print(`  ${ui}   the workflow in the Temporal UI`);
}

/**
 * `keel wait` and `keel run` exit codes: 0 completed, 1 failed (also terminated or timed out by
 * Temporal), 3 step limit, 4 cancelled, 5 still running, 6 waiting for a message or an approval
 * (`wait --until-idle`), 7 stopped at a budget, 8 refused (the tenant runs its maximum of sessions).
 */
export const EXIT_CODES: Readonly<Record<SessionStatus, number>> = {
  completed: 0,
  failed: 1,
  terminated: 1,
  timed_out: 1,
  step_limit: 3,
  cancelled: 4,
  running: 5,
  waiting: 6,
  budget_exhausted: 7,
  refused: 8,
};

export function exitCodeFor(status: SessionStatus): number {
  return EXIT_CODES[status];
}
