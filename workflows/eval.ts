/**
 * `keel eval`: a task suite run as one durable workflow.
 *
 * Each distinct task setup runs once, in a sandbox of its own (child workflow `evalSandbox`),
 * and is snapshotted; every rollout of the tasks sharing it is an ordinary `agentSession`
 * child that forks that snapshot (`spec.fork`, no transcript copied), so the setup is restored,
 * not rebuilt. When a session ends, its check runs in a sandbox restored from the session's
 * last snapshot (another `evalSandbox`). At most `concurrency` rollouts run at once.
 *
 * Deterministic code only. A worker that dies mid-eval costs nothing: finished children are in
 * this workflow's history and are not run again; running ones carry on by themselves.
 */
import { ApplicationFailure, CancellationScope, executeChild, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { EvalActivities } from '../common/activities';
import type { EvalInput, EvalResult, EvalTask, RolloutRecord, SetupOutcome } from '../common/eval';
import { setupKey } from '../common/eval';
import { toolTimeoutSec } from '../common/tools';
import type { RuntimeContract, SandboxSpec, SessionResult, SessionSpec, ToolResult } from '../common/types';
import { agentSession } from './session';
import { SessionSandbox } from './sandbox-lifecycle';

const { rolloutFacts } = proxyActivities<EvalActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 20 },
});

/** What an `evalSandbox` does: write files, run commands, optionally snapshot the result. */
export interface EvalSandboxInput {
  files?: Record<string, string>;
  commands?: string[];
  /** Start from this snapshot's files. */
  restoreFrom?: string;
  sandbox?: SandboxSpec;
  /** Snapshot after each file and command (a setup); false for a check. */
  snapshot: boolean;
}

export interface EvalSandboxResult {
  /** One per file written and command run, in order; stops after the first that failed. */
  results: Array<Pick<ToolResult, 'name' | 'ok' | 'exitCode' | 'output' | 'error'>>;
  ok: boolean;
  snapshot?: string;
}

/** The longest output a check or setup step keeps in the eval's history. */
const OUTPUT_TAIL = 2000;

/**
 * A short-lived sandbox outside any session: a setup or a check. The workflow id is the sandbox's
 * owner id, so the reaper sees it live while it runs; its container is removed at the end.
 */
export async function evalSandbox(input: EvalSandboxInput): Promise<EvalSandboxResult> {
  const id = workflowInfo().workflowId;
  const sandbox = new SessionSandbox(id, input.sandbox, () => undefined);
  if (input.restoreFrom) sandbox.lastSnapshot = input.restoreFrom;
  const calls = [
    ...Object.entries(input.files ?? {}).map(([path, content]) => ({ name: 'write_file', input: { path, content } })),
    ...(input.commands ?? []).map((command) => ({ name: 'shell', input: { command } })),
  ];
  const results: EvalSandboxResult['results'] = [];
  try {
    await sandbox.provision('start');
    for (const [i, call] of calls.entries()) {
      const r = await sandbox.run({ id: `eval-${i + 1}`, ...call }, toolTimeoutSec(call.name, call.input), { snapshot: input.snapshot });
      results.push({ name: r.name, ok: r.ok, ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}), output: r.output.slice(-OUTPUT_TAIL), ...(r.error ? { error: r.error } : {}) });
      if (!r.ok) break;
    }
  } finally {
    await CancellationScope.nonCancellable(() => sandbox.teardown());
  }
  const ok = results.length === calls.length && results.every((r) => r.ok);
  return { results, ok, ...(input.snapshot && sandbox.lastSnapshot ? { snapshot: sandbox.lastSnapshot } : {}) };
}

/** Run a suite: `rollouts` sessions per task, `concurrency` at a time; the records come back in suite order. */
export async function evalSuite(input: EvalInput): Promise<EvalResult> {
  const evalId = workflowInfo().workflowId;
  if (!(input.rollouts >= 1 && input.concurrency >= 1)) throw ApplicationFailure.nonRetryable('rollouts and concurrency must be at least 1', 'Eval.BadInput');

  // One setup per distinct setup, all at once (there are few, and rollouts wait for theirs).
  const keys = [...new Set(input.tasks.map((t) => setupKey(t.setup)).filter((k): k is string => k !== undefined))];
  const setups = new Map<string, Promise<SetupOutcome>>();
  keys.forEach((key, i) => {
    const task = input.tasks.find((t) => setupKey(t.setup) === key) as EvalTask;
    const setupId = `${evalId}.setup-${i + 1}`;
    setups.set(key, runSetup(setupId, task, input.sandbox));
  });

  const jobs = input.tasks.flatMap((task) => Array.from({ length: input.rollouts }, (_, rollout) => ({ task, rollout })));
  const records: RolloutRecord[] = new Array(jobs.length);
  const contracts: RuntimeContract[] = [];
  const contractKeys: string[] = [];
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++;
      const job = jobs[i] as (typeof jobs)[number];
      const key = setupKey(job.task.setup);
      const { contract, ...record } = await runRollout(evalId, input, job.task, job.rollout, key === undefined ? undefined : await (setups.get(key) as Promise<SetupOutcome>));
      records[i] = { ...record, ...(contract ? { contract: contractIndex(contract) } : {}) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(input.concurrency, jobs.length) }, lane));
  return { evalId, model: `${input.model.provider}:${input.model.model}`, rollouts: input.rollouts, records, contracts };

  /** The index of a contract in `contracts`, added when new: the result names each contract once, not once per rollout. */
  function contractIndex(c: RuntimeContract): number {
    const key = JSON.stringify(c);
    const i = contractKeys.indexOf(key);
    if (i >= 0) return i;
    contractKeys.push(key);
    contracts.push(c);
    return contracts.length - 1;
  }
}

async function runSetup(setupId: string, task: EvalTask, sandbox: SandboxSpec | undefined): Promise<SetupOutcome> {
  try {
    const r = await executeChild(evalSandbox, {
      workflowId: setupId,
      args: [{ ...(task.setup?.files ? { files: task.setup.files } : {}), ...(task.setup?.commands ? { commands: task.setup.commands } : {}), ...(sandbox ? { sandbox } : {}), snapshot: true }],
    });
    if (!r.ok) {
      const failed = r.results[r.results.length - 1];
      return { setupId, error: `setup step ${r.results.length} (${failed?.name}) failed${failed?.exitCode !== undefined ? ` with exit ${failed.exitCode}` : ''}: ${failed?.output.slice(-500) ?? ''}` };
    }
    return { setupId, ...(r.snapshot ? { snapshot: r.snapshot } : {}) };
  } catch (err) {
    return { setupId, error: `setup failed: ${(err as Error).message}` };
  }
}

type RolloutOutcome = Omit<RolloutRecord, 'contract'> & { contract?: RuntimeContract };

async function runRollout(evalId: string, input: EvalInput, task: EvalTask, rollout: number, setup: SetupOutcome | undefined): Promise<RolloutOutcome> {
  const sessionId = `${evalId}.${task.id}.${rollout + 1}`;
  const empty = { usage: { inputTokens: 0, outputTokens: 0 }, wallMs: 0, steps: 0, toolCalls: 0 };
  if (setup?.error) return { taskId: task.id, rollout, sessionId, status: 'setup_failed', passed: false, ...empty, error: setup.error };

  const spec: SessionSpec = {
    task: task.prompt,
    model: input.model.provider === 'scripted' ? { ...input.model, script: task.script ?? [] } : input.model,
    ...(input.maxSteps !== undefined ? { maxSteps: input.maxSteps } : {}),
    // Rollout k runs with seed + k: a fixed seed would fault the same calls in every rollout of a task.
    ...(input.inject ? { inject: { ...input.inject, seed: input.inject.seed + rollout } } : {}),
    ...(input.sandbox ? { sandbox: input.sandbox } : {}),
    // Forked from the setup's snapshot: the files, not a transcript (throughSeq 0 copies none).
    ...(setup?.snapshot ? { fork: { from: setup.setupId, atStep: 0, throughSeq: 0, snapshot: setup.snapshot } } : {}),
  };
  let result: SessionResult;
  try {
    result = await executeChild(agentSession, { workflowId: sessionId, args: [spec] });
  } catch (err) {
    result = { sessionId, status: 'failed', steps: 0, toolCalls: 0, usage: { inputTokens: 0, outputTokens: 0 }, error: (err as Error).message.slice(0, 500) };
  }
  const facts = await rolloutFacts({ sessionId, model: spec.model });
  const files = facts.lastSnapshot ?? setup?.snapshot;
  let check: RolloutRecord['check'];
  let checkError: string | undefined;
  try {
    const c = await executeChild(evalSandbox, {
      workflowId: `${sessionId}.check`,
      args: [{ commands: [task.check], ...(files ? { restoreFrom: files } : {}), ...(input.sandbox ? { sandbox: input.sandbox } : {}), snapshot: false }],
    });
    const r = c.results[0];
    check = { exitCode: r?.exitCode ?? null, output: (r?.output ?? '').slice(-500) };
  } catch (err) {
    checkError = `check did not run: ${(err as Error).message}`;
  }
  const error = [result.error, checkError].filter(Boolean).join('; ');
  return {
    taskId: task.id,
    rollout,
    sessionId,
    status: result.status,
    passed: check?.exitCode === 0,
    ...(check ? { check } : {}),
    usage: result.usage,
    ...(facts.costUsd !== undefined ? { costUsd: facts.costUsd } : {}),
    wallMs: facts.wallMs,
    steps: result.steps,
    toolCalls: result.toolCalls,
    ...(facts.contract ? { contract: facts.contract } : {}),
    ...(error ? { error } : {}),
  };
}
