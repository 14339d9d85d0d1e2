/**
 * `keel eval <suite.jsonl>`: run a task suite as one durable workflow (workflows/eval.ts) and
 * print pass rates with 95% Wilson intervals; `keel eval compare a.json b.json`: what changed.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { parseModel, validateSpec, type KeelClient } from '../client';
import { SESSION_QUEUE } from '../common/constants';
import { SessionError } from '../common/errors';
import { compare, parseSuite, report, SuiteError, type Comparison, type EvalInput, type EvalReport, type EvalResult, type EvalTask, type Rate } from '../common/eval';
import type { FaultInjection, ModelSpec } from '../common/types';
import type { KeelConfig } from '../workers/config';
import { connectDatabase } from '../workers/services';
import { watchRollouts } from './eval-progress';
import { checkModelConfigured, connectClient, withWorker } from './sessions';
import { print, printJson } from './terminal';

/** Read and check a suite file; every problem names the file, line and field. */
export function loadSuite(file: string): EvalTask[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SessionError(`cannot read suite ${file}: ${(err as Error).message}`);
  }
  try {
    return parseSuite(text);
  } catch (err) {
    if (err instanceof SuiteError) throw new SessionError(`suite ${file}, ${err.message}`);
    throw err;
  }
}

export interface EvalOptions {
  suite: string;
  /** `provider:model`, or `scripted` (each task's own `script`). */
  model: string;
  baseUrl?: string;
  rollouts?: number;
  concurrency?: number;
  inject?: FaultInjection;
  maxSteps?: number;
  /** The eval's workflow id; an eval with this id that already runs (or ran) is followed, not started again. */
  id?: string;
}

/** Sessions one eval may run: its result (about 1 KB per rollout) must fit Temporal's 2 MB payload limit. */
export const MAX_ROLLOUTS = 1000;

/** The workflow input for a suite, checked as `keel run` checks a session. */
export function evalInput(tasks: EvalTask[], o: EvalOptions): EvalInput {
  const model: ModelSpec = o.model === 'scripted' || o.model.startsWith('scripted:')
    ? { provider: 'scripted', model: o.model.slice('scripted:'.length) || 'eval' }
    : { ...parseModel(o.model), ...(o.baseUrl ? { baseURL: o.baseUrl } : {}) };
  const rollouts = o.rollouts ?? 1;
  const concurrency = o.concurrency ?? 4;
  for (const [name, v] of [['--rollouts', rollouts], ['--concurrency', concurrency]] as const) {
    if (!(Number.isInteger(v) && v >= 1 && v <= 1000)) throw new SessionError(`${name} must be a whole number from 1 to 1000, not ${v}`);
  }
  if (tasks.length * rollouts > MAX_ROLLOUTS) {
    throw new SessionError(`${tasks.length} tasks x ${rollouts} rollouts is more than ${MAX_ROLLOUTS} sessions in one eval (its result must fit one Temporal payload): split the suite`);
  }
  const input: EvalInput = { tasks, model, rollouts, concurrency, ...(o.inject ? { inject: o.inject } : {}), ...(o.maxSteps !== undefined ? { maxSteps: o.maxSteps } : {}) };
  for (const task of tasks) {
    if (model.provider === 'scripted' && !task.script) throw new SessionError(`task ${task.id} has no script: --model scripted plays each task's "script"`);
    try {
      validateSpec({ task: task.prompt, model: model.provider === 'scripted' ? { ...model, script: task.script } : model, ...(input.inject ? { inject: input.inject } : {}), ...(input.maxSteps !== undefined ? { maxSteps: input.maxSteps } : {}) });
    } catch (err) {
      throw new SessionError(`task ${task.id}: ${(err as Error).message}`);
    }
  }
  return input;
}

/** Start the eval (or find it, when `id` names one already started) and wait for its result. */
export async function runEval(client: KeelClient, input: EvalInput, id: string, onStart?: (id: string, fresh: boolean) => void): Promise<EvalReport> {
  let fresh = true;
  try {
    await client.temporal.workflow.start('evalSuite', { workflowId: id, taskQueue: SESSION_QUEUE, args: [input], workflowIdReusePolicy: 'REJECT_DUPLICATE' });
  } catch (err) {
    if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    fresh = false;
  }
  onStart?.(id, fresh);
  const result = (await client.temporal.workflow.getHandle(id).result()) as EvalResult;
  return report(result);
}

const pct = (x: number): string => `${(x * 100).toFixed(0)}%`;
const rate = (r: Rate): string => `${r.passed}/${r.total} ${pct(r.rate)} [${pct(r.low)}, ${pct(r.high)}]`;
const usd = (x: number | undefined): string => (x === undefined ? '-' : `$${x.toFixed(4)}`);
const secs = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;

function table(rows: string[][]): string[] {
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ').trimEnd());
}

/** The report as lines for a person: one row per task, then overall, then the contract it ran on. */
export function formatReport(r: EvalReport): string[] {
  const rows = [['task', 'pass (95% CI)', 'tokens in/out', 'cost', 'wall/rollout', 'steps/rollout']];
  for (const t of [...r.tasks, r.overall]) {
    rows.push([t.taskId, rate(t.pass), `${t.inputTokens}/${t.outputTokens}`, usd(t.costUsd), secs(t.meanWallMs), t.meanSteps.toFixed(1)]);
  }
  const lines = [`eval ${r.evalId}: ${r.model}, ${r.rollouts} rollout${r.rollouts === 1 ? '' : 's'} per task`, '', ...table(rows), ''];
  const failed = r.records.filter((x) => !x.passed);
  for (const x of failed) lines.push(`  failed: ${x.sessionId} (${x.status}${x.check ? `, check exit ${x.check.exitCode}` : ''}${x.error ? `: ${x.error.slice(0, 200)}` : ''})`);
  if (failed.length) lines.push('');
  if (r.contracts.length === 0) lines.push('runtime contract: none recorded');
  for (const c of r.contracts) {
    lines.push(`runtime contract: ${c.model.provider}:${c.model.model}, keel ${c.keelVersion}${c.workerBuildId ? `, worker ${c.workerBuildId}` : ''}${c.sandbox ? `, image ${c.sandbox.imageId.slice(0, 19)} executor ${c.sandbox.executor.slice(0, 12)} ${c.sandbox.ociRuntime ?? 'runc'}` : ''}`);
  }
  return lines;
}

/** The comparison as lines for a person. */
export function formatComparison(c: Comparison): string[] {
  const sign = (d: number | undefined) => (d === undefined ? '-' : `${d >= 0 ? '+' : ''}${(d * 100).toFixed(0)} pts`);
  const rows = [['task', 'before', 'after', 'change', '']];
  for (const t of [...c.tasks, c.overall]) {
    rows.push([t.taskId, t.before ? rate(t.before) : '(not run)', t.after ? rate(t.after) : '(not run)', sign(t.delta), t.significant ? 'intervals apart' : '']);
  }
  const lines = [...table(rows), ''];
  lines.push(`tokens: ${c.tokens.before} -> ${c.tokens.after}`);
  if (c.cost) lines.push(`cost: ${usd(c.cost.before)} -> ${usd(c.cost.after)}`);
  lines.push(`wall per rollout: ${secs(c.meanWallMs.before)} -> ${secs(c.meanWallMs.after)}`);
  if (c.contract.length === 0) lines.push('runtime contract: same');
  else for (const d of c.contract) lines.push(`runtime contract ${d.field}: ${d.before} -> ${d.after}`);
  return lines;
}

function readReport(file: string): EvalReport {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new SessionError(`cannot read eval results ${file}: ${(err as Error).message}`);
  }
  const r = value as Partial<EvalResult>;
  if (typeof r !== 'object' || r === null || !Array.isArray(r.records) || !Array.isArray(r.contracts) || typeof r.evalId !== 'string') {
    throw new SessionError(`${file} is not a keel eval result (written by keel eval --json or --out)`);
  }
  // Recomputed from the records, so a result from another Keel version compares on today's arithmetic.
  return report(r as EvalResult);
}

const whole = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new SessionError(`${name} must be a whole number, not "${v}"`);
  return n;
};

export function registerEval(program: Command, config: () => KeelConfig): void {
  program
    .command('eval')
    .description('run a task suite (JSON Lines) as sessions and report pass rates; `keel eval compare a.json b.json` compares two runs')
    .argument('<suite>', 'the suite file, or `compare`')
    .argument('[files...]', 'with compare: two result files')
    .option('--model <provider:model>', 'the model every rollout uses; `scripted` plays each task\'s own script')
    .option('--base-url <url>', 'base URL for an OpenAI-compatible server')
    .option('--rollouts <n>', 'sessions per task (default 1)', whole('--rollouts'))
    .option('--concurrency <n>', 'sessions at once (default 4)', whole('--concurrency'))
    .option('--inject <file>', 'deliberate tool faults for every rollout (as keel run --inject)')
    .option('--max-steps <n>', 'model turns per rollout', whole('--max-steps'))
    .option('--id <evalId>', 'the eval id (default: generated); an id already started is followed, not run again')
    .option('--out <file>', 'also write the results as JSON to this file')
    .option('--json', 'print the results as one JSON object')
    .option('--no-worker', 'do not run a worker in this process (a `keel worker` must be running)')
    .action(async (suite: string, files: string[], o: { model?: string; baseUrl?: string; rollouts?: number; concurrency?: number; inject?: string; maxSteps?: number; id?: string; out?: string; json?: boolean; worker: boolean }) => {
      if (suite === 'compare') {
        if (files.length !== 2) throw new SessionError('keel eval compare takes two result files: keel eval compare a.json b.json');
        const c = compare(readReport(files[0] as string), readReport(files[1] as string));
        if (o.json) printJson(c);
        else print(...formatComparison(c));
        return;
      }
      if (files.length) throw new SessionError(`keel eval takes one suite file (extra: ${files.join(' ')})`);
      if (!o.model) throw new SessionError('say which model runs the suite: --model provider:model, or --model scripted');
      let inject: FaultInjection | undefined;
      if (o.inject) {
        try {
          inject = JSON.parse(readFileSync(o.inject, 'utf8')) as FaultInjection;
        } catch (err) {
          throw new SessionError(`cannot read fault injection ${o.inject}: ${(err as Error).message}`);
        }
      }
      const input = evalInput(loadSuite(suite), { suite, model: o.model, ...(o.baseUrl ? { baseUrl: o.baseUrl } : {}), ...(o.rollouts !== undefined ? { rollouts: o.rollouts } : {}), ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}), ...(inject ? { inject } : {}), ...(o.maxSteps !== undefined ? { maxSteps: o.maxSteps } : {}) });
      const cfg = config();
      if (o.worker && input.model.provider !== 'scripted') checkModelConfigured({ task: '', model: input.model }, cfg);
      const id = o.id ?? `eval-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, '')}-${Math.random().toString(36).slice(2, 6)}`;
      const client = await connectClient(cfg);
      // Rollouts done of the total, from the session index, while it runs (stderr with --json).
      const sql = await connectDatabase(cfg, { migrate: false }).catch(() => undefined);
      let stopProgress = (): void => undefined;
      try {
        const r = await withWorker(cfg, o.worker, () =>
          runEval(client, input, id, (evalId, fresh) => {
            const n = input.tasks.length * input.rollouts;
            const line = fresh ? `eval ${evalId} started: ${input.tasks.length} tasks x ${input.rollouts} = ${n} sessions, ${input.concurrency} at a time` : `eval ${evalId} was already started: following it`;
            const say = (l: string) => (o.json ? console.error(l) : print(l));
            say(line);
            if (sql) stopProgress = watchRollouts(sql, evalId, n, say);
          }),
        ).finally(() => stopProgress());
        if (o.out) {
          writeFileSync(resolve(o.out), `${JSON.stringify(r, null, 2)}\n`);
        }
        if (o.json) printJson(r);
        else print('', ...formatReport(r), ...(o.out ? [`results: ${o.out}`] : []));
      } finally {
        await client.close();
        await sql?.end({ timeout: 2 });
      }
    });
}
