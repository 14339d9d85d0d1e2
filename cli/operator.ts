/**
 * Operator control from the command line: the `keel run` options for policies,
 * budgets, tenants and fault injection, and `keel pending | approve | deny |
 * budget | tenant`.
 */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { SessionError } from '../common/errors';
import { describeCall } from '../common/tools';
import { webhookUrlProblems } from '../common/webhooks';
import type { Budgets, FaultInjection, SessionSpec } from '../common/types';
import type { ApprovalPolicy } from '../common/policy';
import { operatorView, pendingApprovals, type OperatorView } from '../inspect/operator';
import { connect, setTenantLimits, tenantLimits, tenantUsage } from '../store';
import type { KeelConfig } from '../workers/config';
import { connectDatabase } from '../workers/services';
import { withClient } from './sessions';
import { print, printJson } from './terminal';

/** Who answers, unless `--as` says: the OS user. */
function defaultActor(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown';
  }
}

function readJson<T>(file: string, what: string): T {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (err) {
    throw new SessionError(`cannot read ${what} ${file}: ${(err as Error).message}`);
  }
}

/** A positive number option, or a clear error naming it. */
function positive(value: string | undefined, flag: string, integer = true): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!(Number.isFinite(n) && n > 0 && (!integer || Number.isInteger(n)))) throw new SessionError(`${flag} takes a positive ${integer ? 'whole ' : ''}number, not "${value}"`);
  return n;
}

/** Options `keel run` takes for operator control. */
export interface OperatorRunOptions {
  policy?: string;
  budgetInputTokens?: string;
  budgetOutputTokens?: string;
  budgetUsd?: string;
  budgetSeconds?: string;
  budgetToolCalls?: string;
  price?: string;
  inject?: string;
  tenant?: string;
  queue?: boolean;
  webhook?: string;
}

export function addOperatorRunOptions(cmd: Command): Command {
  return cmd
    .option('--policy <file>', 'approval policy (JSON): allow, deny or ask per tool, with command and path patterns')
    .option('--budget-input-tokens <n>', 'stop (budget_exhausted) before passing this many input tokens')
    .option('--budget-output-tokens <n>', 'stop before passing this many output tokens (each call reserves its maxOutputTokens)')
    .option('--budget-usd <dollars>', 'stop before spending this much, at the price table (or --price)')
    .option('--budget-seconds <n>', 'stop after this many seconds of active time (waits do not count)')
    .option('--budget-tool-calls <n>', 'stop before the tool call past this many')
    .option('--price <in,out>', "the model's price in dollars per million input and output tokens, e.g. 3,15")
    .option('--inject <file>', 'deliberate tool faults (JSON: { "seed": 1, "rules": [{ "tool": "shell", "rate": 0.3, "fault": "error" }] })')
    .option('--tenant <name>', 'the tenant the session belongs to (its caps apply; default: default)')
    .option('--queue', "when the tenant runs its maximum of sessions, wait for a free slot instead of being refused")
    .option('--webhook <url>', 'POST here (signed) when the session waits, runs out of budget or ends (default: the tenant\'s)');
}

/** The parts of a session spec the operator options set. */
export function operatorSpec(o: OperatorRunOptions): Partial<SessionSpec> & { price?: { inputPerMTok: number; outputPerMTok: number } } {
  const budgets: Budgets = {};
  const set = (k: keyof Budgets, v: number | undefined) => {
    if (v !== undefined) budgets[k] = v;
  };
  set('inputTokens', positive(o.budgetInputTokens, '--budget-input-tokens'));
  set('outputTokens', positive(o.budgetOutputTokens, '--budget-output-tokens'));
  set('usd', positive(o.budgetUsd, '--budget-usd', false));
  set('wallClockSec', positive(o.budgetSeconds, '--budget-seconds'));
  set('toolCalls', positive(o.budgetToolCalls, '--budget-tool-calls'));
  let price;
  if (o.price !== undefined) {
    const [input, output, extra] = o.price.split(',').map((p) => Number(p.trim()));
    if (extra !== undefined || !(input! >= 0 && output! >= 0)) throw new SessionError(`--price takes two numbers, dollars per million input and output tokens (e.g. 3,15), not "${o.price}"`);
    price = { inputPerMTok: input!, outputPerMTok: output! };
  }
  return {
    ...(o.policy ? { policy: readJson<ApprovalPolicy>(o.policy, 'policy') } : {}),
    ...(Object.keys(budgets).length ? { budgets } : {}),
    ...(o.inject ? { inject: readJson<FaultInjection>(o.inject, 'fault injection') } : {}),
    ...(o.tenant ? { tenant: o.tenant } : {}),
    ...(o.queue ? { queue: true } : {}),
    ...(o.webhook ? { webhook: { url: o.webhook } } : {}),
    ...(price ? { price } : {}),
  };
}

function ago(since: Date): string {
  const sec = Math.max(0, Math.round((Date.now() - since.getTime()) / 1000));
  if (sec < 120) return `${sec} s`;
  if (sec < 7200) return `${Math.round(sec / 60)} min`;
  if (sec < 172_800) return `${Math.round(sec / 3600)} h`;
  return `${Math.round(sec / 86_400)} d`;
}

/** Lines for `keel show`: budgets against spending, calls waiting, injected faults. */
export function operatorLines(view: OperatorView, sessionId: string): string[] {
  const lines: string[] = [];
  const b = view.budgets;
  const s = view.spent;
  const row = (name: string, used: number | undefined, limit: number | undefined, unit = '') =>
    `${name} ${used ?? '?'}${unit}${limit !== undefined ? ` of ${limit}${unit}` : ''}`;
  const parts = [
    row('input tokens', s.inputTokens, b.inputTokens),
    row('output tokens', s.outputTokens, b.outputTokens),
    s.usd !== undefined || b.usd !== undefined ? row('usd', s.usd, b.usd) : undefined,
    s.activeSec !== undefined || b.wallClockSec !== undefined ? row('active', s.activeSec, b.wallClockSec, ' s') : undefined,
    row('tool calls', s.toolCalls, b.toolCalls),
  ].filter(Boolean);
  if (Object.keys(b).length) {
    lines.push(`budgets: ${parts.join(', ')}`);
    if (b.usd !== undefined && s.usd === undefined) lines.push('  (no price is known for this model: the USD budget does not limit it)');
  }
  if (view.exhausted) {
    const e = view.exhausted;
    lines.push(`stopped at the ${e.budget} budget (${e.used} of ${e.limit}${e.reserve !== undefined ? `; the next model call reserves ${e.reserve}` : ''}): npx keel budget ${sessionId} --add-…`);
  }
  for (const p of view.pending) {
    lines.push(`waiting for approval: call ${p.callId}, ${p.tool} ${describeCall(p.tool, p.input)} (for ${ago(p.since)}${p.reason ? `; ${p.reason}` : ''})`);
    lines.push(`  npx keel approve ${sessionId} ${p.callId} [--remember]   or   npx keel deny ${sessionId} ${p.callId} --reason "…"`);
  }
  if (view.injected) lines.push(`${view.injected} tool result${view.injected === 1 ? ' was a deliberate fault' : 's were deliberate faults'} (marked INJECTED below)`);
  return lines;
}

export { operatorView };

export function registerOperator(program: Command, config: () => KeelConfig): void {
  program
    .command('pending')
    .description('calls waiting for approval, across live sessions')
    .option('--json', 'print them as JSON')
    .action(async (o: { json?: boolean }) => {
      const sql = await connectDatabase(config());
      try {
        const pending = await pendingApprovals(sql);
        if (o.json) return printJson(pending.map((p) => ({ ...p, waitedSec: Math.round((Date.now() - p.since.getTime()) / 1000) })));
        if (pending.length === 0) return print('no calls are waiting for approval');
        for (const p of pending) {
          print(`${p.sessionId}  ${p.callId}  waiting ${ago(p.since)}  ${p.tool} ${describeCall(p.tool, p.input)}${p.reason ? `  (${p.reason})` : ''}`);
        }
        print(`\nanswer with: npx keel approve <session> <call> [--remember]   or   npx keel deny <session> <call> --reason "…"`);
      } finally {
        await sql.end({ timeout: 2 });
      }
    });

  program
    .command('approve')
    .description('let a call that waits for approval run')
    .argument('<sessionId>')
    .argument('<callId>')
    .option('--remember', 'also allow exactly this call (same tool, same arguments) for the rest of the session')
    .option('--as <name>', 'who approves (default: the OS user)')
    .action(async (id: string, callId: string, o: { remember?: boolean; as?: string }) => {
      await withClient(config(), (client) => client.approve(id, callId, { by: o.as ?? defaultActor(), ...(o.remember ? { remember: true } : {}) }));
      print(`approved call ${callId} of ${id}${o.remember ? ' (remembered for this session)' : ''}`);
    });

  program
    .command('deny')
    .description('refuse a call that waits for approval; the model gets the reason as its result')
    .argument('<sessionId>')
    .argument('<callId>')
    .requiredOption('--reason <text>', 'why (the model reads it)')
    .option('--as <name>', 'who denies (default: the OS user)')
    .action(async (id: string, callId: string, o: { reason: string; as?: string }) => {
      await withClient(config(), (client) => client.deny(id, callId, { by: o.as ?? defaultActor(), reason: o.reason }));
      print(`denied call ${callId} of ${id}`);
    });

  program
    .command('budget')
    .description("add to a session's budgets; a session stopped at one resumes where it stopped")
    .argument('<sessionId>')
    .option('--add-tokens <n>', 'add to both token budgets (those the session has)')
    .option('--add-input-tokens <n>', 'add to the input-token budget')
    .option('--add-output-tokens <n>', 'add to the output-token budget')
    .option('--add-usd <dollars>', 'add to the USD budget')
    .option('--add-seconds <n>', 'add to the active-time budget')
    .option('--add-tool-calls <n>', 'add to the tool-call budget')
    .option('--as <name>', 'who adds (default: the OS user)')
    .action(async (id: string, o: Record<string, string | undefined>) => {
      const add: Budgets = {};
      const tokens = positive(o.addTokens, '--add-tokens');
      const put = (k: keyof Budgets, v: number | undefined) => {
        if (v !== undefined) add[k] = (add[k] ?? 0) + v;
      };
      put('inputTokens', tokens);
      put('outputTokens', tokens);
      put('inputTokens', positive(o.addInputTokens, '--add-input-tokens'));
      put('outputTokens', positive(o.addOutputTokens, '--add-output-tokens'));
      put('usd', positive(o.addUsd, '--add-usd', false));
      put('wallClockSec', positive(o.addSeconds, '--add-seconds'));
      put('toolCalls', positive(o.addToolCalls, '--add-tool-calls'));
      if (Object.keys(add).length === 0) throw new SessionError('say what to add: --add-tokens, --add-input-tokens, --add-output-tokens, --add-usd, --add-seconds or --add-tool-calls');
      const status = await withClient(config(), async (client) => {
        await client.addBudget(id, add, { by: o.as ?? defaultActor() });
        return client.status(id);
      });
      print(`added to ${id}'s budgets; it is ${status.status}${status.budgets ? ` (budgets now ${JSON.stringify(status.budgets)})` : ''}`);
    });

  const tenant = program.command('tenant').description("a tenant's caps: running sessions, tokens and dollars per day (UTC)");
  tenant
    .command('set')
    .description("set a tenant's caps (needs the owner role: KEEL_DATABASE_OWNER_URL); a cap left out is removed")
    .argument('<tenant>')
    .option('--max-running <n>', 'live sessions at once; a start beyond it is refused, or queued with --queue')
    .option('--daily-tokens <n>', 'input + output tokens per UTC day, across all its sessions')
    .option('--daily-usd <dollars>', 'dollars per UTC day, across all its sessions')
    .option('--webhook <url>', "where its sessions' webhooks go when their spec names none (signed with the workers' KEEL_WEBHOOK_SECRET)")
    .action(async (name: string, o: Record<string, string | undefined>) => {
      const urlProblems = o.webhook !== undefined ? webhookUrlProblems(o.webhook, '--webhook') : [];
      if (urlProblems.length) throw new SessionError(urlProblems.join('; '));
      const cfg = config();
      const sql = connect(cfg.databaseOwnerUrl);
      try {
        const limits = {
          tenant: name,
          maxRunning: positive(o.maxRunning, '--max-running'),
          dailyTokens: positive(o.dailyTokens, '--daily-tokens'),
          dailyUsd: positive(o.dailyUsd, '--daily-usd', false),
          webhookUrl: o.webhook,
        };
        await setTenantLimits(sql, limits);
        print(`tenant ${name}: ${describeLimits(limits)}`);
      } finally {
        await sql.end({ timeout: 2 });
      }
    });
  tenant
    .command('show')
    .description("a tenant's caps, and what it runs and spent today")
    .argument('<tenant>')
    .option('--json', 'print it as JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const sql = await connectDatabase(config());
      try {
        const limits = (await tenantLimits(sql, name)) ?? { tenant: name };
        const usage = await tenantUsage(sql, name);
        const [{ running } = { running: 0 }] = await sql<{ running: number }[]>`
          select count(*)::int as running from sessions where tenant = ${name} and status in ('running', 'waiting', 'budget_exhausted')`;
        if (o.json) return printJson({ ...limits, running, today: usage });
        print(`tenant ${name}: ${describeLimits(limits)}`);
        print(`  live sessions: ${running}${limits.maxRunning !== undefined ? ` of ${limits.maxRunning}` : ''}`);
        print(`  today (UTC): ${usage.tokens} tokens${limits.dailyTokens !== undefined ? ` of ${limits.dailyTokens}` : ''}, $${usage.usd}${limits.dailyUsd !== undefined ? ` of $${limits.dailyUsd}` : ''}`);
      } finally {
        await sql.end({ timeout: 2 });
      }
    });
}

function describeLimits(l: { maxRunning?: number; dailyTokens?: number; dailyUsd?: number; webhookUrl?: string }): string {
  const parts = [
    l.maxRunning !== undefined ? `at most ${l.maxRunning} live sessions` : undefined,
    l.dailyTokens !== undefined ? `${l.dailyTokens} tokens a day` : undefined,
    l.dailyUsd !== undefined ? `$${l.dailyUsd} a day` : undefined,
    l.webhookUrl !== undefined ? `webhook ${l.webhookUrl}` : undefined,
  ].filter(Boolean);
  return parts.length ? parts.join(', ') : 'no caps';
}
