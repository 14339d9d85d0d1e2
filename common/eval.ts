/**
 * Task suites (`keel eval`): the suite format and its parser, the eval workflow's input and
 * output, and the arithmetic over results (pass rates with a 95% Wilson interval, comparison).
 *
 * Imports nothing from Node: the eval workflow (workflows/eval.ts) uses these types.
 */
import type { FaultInjection, ModelSpec, RuntimeContract, SandboxSpec, ScriptTurn, SessionStatus, TokenUsage } from './types';

/** What a task's sandbox holds before the model starts. */
export interface EvalSetup {
  /** Files written first, path (under /workspace) to content. */
  files?: Record<string, string>;
  /** Shell commands run next, in order, in /workspace; the first that exits non-zero fails the setup. */
  commands?: string[];
}

/** One line of a suite file. */
export interface EvalTask {
  /** Unique within the suite: letters, digits, `.`, `_`, `-`. */
  id: string;
  /** The task the model is given. */
  prompt: string;
  setup?: EvalSetup;
  /** A shell command run in the sandbox (its files as the session left them) after the session ends: exit 0 = pass. */
  check: string;
  /** The turns a scripted model plays for this task (`--model scripted`); ignored for other models. */
  script?: ScriptTurn[];
}

/** A suite line that cannot be used. `line` is 1-based; `field` names what is wrong, when one field is. */
export class SuiteError extends Error {
  constructor(readonly line: number, readonly field: string | undefined, readonly problem: string) {
    super(`line ${line}${field ? `, field "${field}"` : ''}: ${problem}`);
    this.name = 'SuiteError';
  }
}

const TASK_FIELDS = new Set(['id', 'prompt', 'setup', 'check', 'script']);
const SETUP_FIELDS = new Set(['files', 'commands']);
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Parse a suite (JSON Lines: one task per line; blank lines and lines starting with `#` are skipped). Throws {@link SuiteError}. */
export function parseSuite(text: string): EvalTask[] {
  const tasks: EvalTask[] = [];
  const seen = new Map<string, number>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    const raw = (lines[i] as string).trim();
    if (!raw || raw.startsWith('#')) continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      throw new SuiteError(n, undefined, `not JSON (${(err as Error).message})`);
    }
    const task = parseTask(value, n);
    const first = seen.get(task.id);
    if (first !== undefined) throw new SuiteError(n, 'id', `"${task.id}" is already the id of line ${first}`);
    seen.set(task.id, n);
    tasks.push(task);
  }
  if (tasks.length === 0) throw new SuiteError(1, undefined, 'the suite has no tasks');
  return tasks;
}

function parseTask(value: unknown, n: number): EvalTask {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SuiteError(n, undefined, 'a task must be a JSON object');
  const o = value as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!TASK_FIELDS.has(k)) throw new SuiteError(n, k, `unknown field (a task has ${[...TASK_FIELDS].join(', ')})`);
  const text = (field: string): string => {
    const v = o[field];
    if (v === undefined) throw new SuiteError(n, field, 'is required');
    if (typeof v !== 'string' || !v.trim()) throw new SuiteError(n, field, 'must be a non-empty string');
    return v;
  };
  const id = text('id');
  if (!ID_PATTERN.test(id)) throw new SuiteError(n, 'id', `"${id}" must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  const task: EvalTask = { id, prompt: text('prompt'), check: text('check') };
  if (o.setup !== undefined) task.setup = parseSetup(o.setup, n);
  if (o.script !== undefined) task.script = parseScript(o.script, n);
  return task;
}

function parseSetup(value: unknown, n: number): EvalSetup {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SuiteError(n, 'setup', 'must be an object with files and/or commands');
  const o = value as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!SETUP_FIELDS.has(k)) throw new SuiteError(n, `setup.${k}`, 'unknown field (setup has files, commands)');
  const setup: EvalSetup = {};
  if (o.files !== undefined) {
    if (typeof o.files !== 'object' || o.files === null || Array.isArray(o.files)) throw new SuiteError(n, 'setup.files', 'must be an object of path: content');
    for (const [path, content] of Object.entries(o.files)) {
      if (!path || path.startsWith('/') || path.split('/').includes('..')) throw new SuiteError(n, `setup.files.${path}`, 'a path must be relative to /workspace, without ".."');
      if (typeof content !== 'string') throw new SuiteError(n, `setup.files.${path}`, 'content must be a string');
    }
    setup.files = o.files as Record<string, string>;
  }
  if (o.commands !== undefined) {
    if (!Array.isArray(o.commands)) throw new SuiteError(n, 'setup.commands', 'must be a list of shell commands');
    o.commands.forEach((c, j) => {
      if (typeof c !== 'string' || !c.trim()) throw new SuiteError(n, `setup.commands[${j}]`, 'must be a non-empty string');
    });
    setup.commands = o.commands as string[];
  }
  return setup;
}

function parseScript(value: unknown, n: number): ScriptTurn[] {
  if (!Array.isArray(value) || value.length === 0) throw new SuiteError(n, 'script', 'must be a non-empty list of turns');
  value.forEach((t, j) => {
    if (typeof t !== 'object' || t === null || Array.isArray(t)) throw new SuiteError(n, `script[${j}]`, 'a turn is an object with text and/or toolCalls');
    const turn = t as Record<string, unknown>;
    if (turn.text !== undefined && typeof turn.text !== 'string') throw new SuiteError(n, `script[${j}].text`, 'must be a string');
    if (turn.toolCalls !== undefined && !(Array.isArray(turn.toolCalls) && turn.toolCalls.every((c) => typeof c === 'object' && c !== null && typeof (c as { name?: unknown }).name === 'string'))) {
      throw new SuiteError(n, `script[${j}].toolCalls`, 'must be a list of { name, input }');
    }
  });
  return value as ScriptTurn[];
}

/** The eval workflow's input. */
export interface EvalInput {
  tasks: EvalTask[];
  /** The model every rollout uses; with provider `scripted`, each task's own `script`. */
  model: ModelSpec;
  /** Rollouts per task. */
  rollouts: number;
  /** Rollouts (sessions) running at once. */
  concurrency: number;
  /** Deliberate tool faults for every rollout; rollout k (0-based) runs with `seed + k`. */
  inject?: FaultInjection;
  maxSteps?: number;
  sandbox?: SandboxSpec;
}

/** One rollout's outcome. `sessionId` is an ordinary session: `keel show` it. */
export interface RolloutRecord {
  taskId: string;
  /** 0-based. */
  rollout: number;
  sessionId: string;
  /** The session's final status, or `setup_failed` when the task's setup did not succeed (no session ran). */
  status: SessionStatus | 'setup_failed';
  passed: boolean;
  /** The check's exit code and the tail of its output; absent when no check ran. */
  check?: { exitCode: number | null; output: string };
  usage: TokenUsage;
  /** Dollars, when the model's price is known. */
  costUsd?: number;
  /** From the session's first event to its last. */
  wallMs: number;
  steps: number;
  toolCalls: number;
  /** Which of the result's `contracts` the session ran on (absent: none recorded). */
  contract?: number;
  error?: string;
}

/** What one setup produced: the snapshot rollouts fork from, or why it failed. */
export interface SetupOutcome {
  /** The sandbox id the setup ran under (the `fork.from` of its rollouts). */
  setupId: string;
  snapshot?: string;
  error?: string;
}

/** The eval workflow's result. */
export interface EvalResult {
  evalId: string;
  model: string;
  rollouts: number;
  records: RolloutRecord[];
  /** The distinct runtime contracts the rollouts ran on (usually one), each recorded once to keep the result small. */
  contracts: RuntimeContract[];
}

/** A pass rate with its 95% Wilson score interval. */
export interface Rate {
  passed: number;
  total: number;
  rate: number;
  low: number;
  high: number;
}

/** The 95% Wilson score interval for `passed` of `total` (z = 1.96). Total 0 gives [0, 1]. */
export function wilson(passed: number, total: number, z = 1.959963984540054): Rate {
  if (!(Number.isInteger(passed) && Number.isInteger(total) && passed >= 0 && total >= 0 && passed <= total)) {
    throw new RangeError(`wilson needs 0 <= passed <= total, whole numbers (got ${passed} of ${total})`);
  }
  if (total === 0) return { passed, total, rate: 0, low: 0, high: 1 };
  const p = passed / total;
  const z2 = z * z;
  const centre = (p + z2 / (2 * total)) / (1 + z2 / total);
  const half = (z / (1 + z2 / total)) * Math.sqrt((p * (1 - p)) / total + z2 / (4 * total * total));
  // At 0 and at total the bound is exactly 0 or 1; floating point would leave 1e-16 off.
  return { passed, total, rate: p, low: passed === 0 ? 0 : Math.max(0, centre - half), high: passed === total ? 1 : Math.min(1, centre + half) };
}

/** Per-task and overall figures of an eval. */
export interface TaskSummary {
  taskId: string;
  pass: Rate;
  inputTokens: number;
  outputTokens: number;
  costUsd?: number;
  /** Means per rollout. */
  meanWallMs: number;
  meanSteps: number;
}

export interface EvalReport extends EvalResult {
  tasks: TaskSummary[];
  overall: TaskSummary;
}

function summarize(taskId: string, records: readonly RolloutRecord[]): TaskSummary {
  const n = records.length;
  const costs = records.map((r) => r.costUsd);
  return {
    taskId,
    pass: wilson(records.filter((r) => r.passed).length, n),
    inputTokens: records.reduce((s, r) => s + r.usage.inputTokens, 0),
    outputTokens: records.reduce((s, r) => s + r.usage.outputTokens, 0),
    ...(n > 0 && costs.every((c) => c !== undefined) ? { costUsd: costs.reduce((s: number, c) => s + (c as number), 0) } : {}),
    meanWallMs: n ? records.reduce((s, r) => s + r.wallMs, 0) / n : 0,
    meanSteps: n ? records.reduce((s, r) => s + r.steps, 0) / n : 0,
  };
}

/** The report of an eval result: per task (in suite order) and overall. */
export function report(result: EvalResult): EvalReport {
  const order: string[] = [];
  const byTask = new Map<string, RolloutRecord[]>();
  for (const r of result.records) {
    if (!byTask.has(r.taskId)) {
      byTask.set(r.taskId, []);
      order.push(r.taskId);
    }
    (byTask.get(r.taskId) as RolloutRecord[]).push(r);
  }
  return {
    ...result,
    tasks: order.map((id) => summarize(id, byTask.get(id) as RolloutRecord[])),
    overall: summarize('overall', result.records),
  };
}

/** One task's change between two reports. */
export interface TaskChange {
  taskId: string;
  before?: Rate;
  after?: Rate;
  /** after.rate - before.rate, when both ran it. */
  delta?: number;
  /** The two 95% intervals do not overlap: a change unlikely to be noise. */
  significant: boolean;
}

export interface Comparison {
  tasks: TaskChange[];
  overall: TaskChange;
  /** Runtime contract fields that differ (first contract of each report). */
  contract: Array<{ field: string; before: string; after: string }>;
  cost?: { before: number; after: number };
  tokens: { before: number; after: number };
  meanWallMs: { before: number; after: number };
}

function change(taskId: string, before: Rate | undefined, after: Rate | undefined): TaskChange {
  return {
    taskId,
    ...(before ? { before } : {}),
    ...(after ? { after } : {}),
    ...(before && after ? { delta: after.rate - before.rate } : {}),
    significant: Boolean(before && after && (after.low > before.high || after.high < before.low)),
  };
}

/** What changed from report `a` to report `b`: pass rates per task and overall, cost, tokens, time and the runtime contract. */
export function compare(a: EvalReport, b: EvalReport): Comparison {
  const ids = [...a.tasks.map((t) => t.taskId), ...b.tasks.map((t) => t.taskId).filter((id) => !a.tasks.some((t) => t.taskId === id))];
  const contract: Comparison['contract'] = [];
  const flat = (c: RuntimeContract | undefined): Map<string, string> => {
    const out = new Map<string, string>();
    const walk = (v: unknown, path: string) => {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k);
      else if (Array.isArray(v) && v.every((x) => typeof x === 'object' && x !== null && 'name' in x)) for (const x of v) walk(x, `${path}.${(x as { name: string }).name}`);
      else out.set(path, JSON.stringify(v));
    };
    if (c) walk(c, '');
    return out;
  };
  const fa = flat(a.contracts[0]);
  const fb = flat(b.contracts[0]);
  for (const field of [...new Set([...fa.keys(), ...fb.keys()])].sort()) {
    if (fa.get(field) !== fb.get(field)) contract.push({ field, before: fa.get(field) ?? '(none)', after: fb.get(field) ?? '(none)' });
  }
  return {
    tasks: ids.map((id) => change(id, a.tasks.find((t) => t.taskId === id)?.pass, b.tasks.find((t) => t.taskId === id)?.pass)),
    overall: change('overall', a.overall.pass, b.overall.pass),
    contract,
    ...(a.overall.costUsd !== undefined && b.overall.costUsd !== undefined ? { cost: { before: a.overall.costUsd, after: b.overall.costUsd } } : {}),
    tokens: { before: a.overall.inputTokens + a.overall.outputTokens, after: b.overall.inputTokens + b.overall.outputTokens },
    meanWallMs: { before: a.overall.meanWallMs, after: b.overall.meanWallMs },
  };
}

/** Key grouping tasks whose setups are identical (they share one snapshot). Empty setups share none. */
export function setupKey(setup: EvalSetup | undefined): string | undefined {
  if (!setup || (!Object.keys(setup.files ?? {}).length && !(setup.commands ?? []).length)) return undefined;
  const files = Object.keys(setup.files ?? {}).sort().map((k) => [k, (setup.files as Record<string, string>)[k]]);
  return JSON.stringify({ files, commands: setup.commands ?? [] });
}
