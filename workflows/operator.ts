/**
 * Operator control inside a session: approval policies (a call waits for a
 * person, for days if need be, holding no container), budgets (the session
 * pauses at the first it reaches and resumes when budget is added), and the
 * tenant's daily ceilings (reserved before each model call, settled after).
 *
 * Deterministic code. Time is workflow time ({@link now}); the wall-clock
 * budget counts active time only, so waits do not spend it.
 */
import { condition, defineSignal, defineUpdate, setHandler } from '@temporalio/workflow';
import type { Admission, StoreActivities } from '../common/activities';
import { canonicalJson } from '../common/canonical-json';
import { APPROVAL_SIGNAL, APPROVAL_UPDATE, BUDGET_SIGNAL, BUDGET_UPDATE } from '../common/constants';
import { evaluatePolicy, type ApprovalPolicy, type PolicyRule } from '../common/policy';
import { costOf, priceOf } from '../common/prices';
import { sandboxLimits } from '../common/sandbox-spec';
import { describeCall } from '../common/tools';
import type { Budgets, SessionSpec, SessionState, TokenUsage, ToolCall, ToolResult } from '../common/types';
import type { Emit, SessionSandbox } from './sandbox-lifecycle';

/** A person's answer to a call waiting for approval. */
export interface ApprovalAnswer {
  callId: string;
  decision: 'approve' | 'deny';
  /** With `approve`: allow exactly these arguments for the rest of the session without asking. */
  remember?: boolean;
  reason?: string;
  /** Who answered. */
  by: string;
}

/** Budget to add to a session, and who added it. */
export interface BudgetAddition {
  add: Budgets;
  by: string;
}

export const approvalUpdate = defineUpdate<void, [ApprovalAnswer]>(APPROVAL_UPDATE);
export const approvalSignal = defineSignal<[ApprovalAnswer]>(APPROVAL_SIGNAL);
export const budgetUpdate = defineUpdate<void, [BudgetAddition]>(BUDGET_UPDATE);
export const budgetSignal = defineSignal<[BudgetAddition]>(BUDGET_SIGNAL);

/** What a workflow run hands the next about operator control. */
export interface OperatorCarry {
  budgets: Budgets;
  activeMs: number;
  remembered: PolicyRule[];
  lastInputTokens: number;
}

/**
 * Workflow time: in Temporal's workflow sandbox `Date` is the time of the current workflow
 * task, recorded in history and the same on every replay. The one place this file reads it.
 */
function now(): number {
  return Date.now();
}

/** `activeSince` while the clock is paused. */
const PAUSED = -1;

/** How long a call waits for an answer before it is denied. */
const DEFAULT_APPROVAL_TIMEOUT_SEC = 86_400;
/** How often a session stopped at its tenant's daily ceiling tries again: 5 s, doubling to 10 minutes. */
const TENANT_RETRY_MIN_MS = 5_000;
const TENANT_RETRY_MAX_MS = 600_000;

/** A budget the session reached: what it used, its limit, and what the next model call would reserve. */
type Overrun = { budget: string; used: number; limit: number; reserve?: number };

interface Pending {
  callId: string;
  tool: string;
  summary: string;
  since: number;
  reason?: string;
  answer?: ApprovalAnswer;
}

export interface OperatorDeps {
  spec: SessionSpec;
  state: SessionState;
  usage: TokenUsage;
  emit: Emit;
  flush: () => Promise<void>;
  sandbox: SessionSandbox;
  store: Pick<StoreActivities, 'chargeTenant'>;
}

export class Operator {
  readonly budgets: Budgets;
  private activeMs: number;
  private activeSince = now();
  private readonly remembered: PolicyRule[];
  private readonly pending = new Map<string, Pending>();
  /** Calls answered in this run, so a second answer is told who answered first. */
  private readonly answered = new Map<string, string>();
  private lastInputTokens: number;
  private added = 0;
  private warnedNoPrice = false;
  admission?: Admission;

  constructor(private readonly d: OperatorDeps, carry?: OperatorCarry) {
    this.budgets = { ...(carry?.budgets ?? d.spec.budgets ?? {}) };
    this.activeMs = carry?.activeMs ?? 0;
    this.remembered = [...(carry?.remembered ?? [])];
    this.lastInputTokens = carry?.lastInputTokens ?? 0;
  }

  /** Register the approval and budget handlers (updates with validators, and signals for clients that cannot update). */
  listen(): void {
    const answer = (a: ApprovalAnswer): void => {
      const p = this.pending.get(a.callId);
      if (p && !p.answer) p.answer = a;
    };
    setHandler(approvalUpdate, answer, { validator: (a) => this.validateAnswer(a) });
    setHandler(approvalSignal, answer);
    // Only budgets the session has grow: adding to one it does not have would create a limit where there was none.
    const add = (b: BudgetAddition): void => {
      const applied: Budgets = {};
      for (const [k, v] of Object.entries(b.add) as Array<[keyof Budgets, number]>) {
        if (this.budgets[k] === undefined) continue;
        this.budgets[k] = this.budgets[k] + v;
        applied[k] = v;
      }
      this.d.emit('budget.added', { add: applied, by: b.by });
      this.added++;
    };
    setHandler(budgetUpdate, add, { validator: (b) => this.validateAddition(b) });
    setHandler(budgetSignal, (b) => {
      try {
        this.validateAddition(b);
      } catch {
        return;
      }
      add(b);
    });
  }

  carry(): OperatorCarry {
    return { budgets: { ...this.budgets }, activeMs: this.activeNowMs(), remembered: [...this.remembered], lastInputTokens: this.lastInputTokens };
  }

  /** Spending so far, for the status query and `keel show`. */
  spent(): NonNullable<SessionState['spent']> {
    const price = priceOf(this.d.spec.model);
    return {
      inputTokens: this.d.usage.inputTokens,
      outputTokens: this.d.usage.outputTokens,
      ...(price ? { usd: round(costOf(this.d.usage, price)) } : {}),
      activeSec: Math.round(this.activeNowMs() / 1000),
      toolCalls: this.d.state.toolCalls,
    };
  }

  // --- budgets ----------------------------------------------------------

  /** Before a model call: wait (stopped, holding no container) until every budget has room for it. */
  async beforeModelCall(maxOutputTokens: number): Promise<void> {
    const price = priceOf(this.d.spec.model);
    if (this.budgets.usd !== undefined && !price && !this.warnedNoPrice) {
      this.warnedNoPrice = true;
      this.d.emit('budget.warning', { message: `no price is known for ${this.d.spec.model.model}: the USD budget cannot limit it (set ModelSpec.price)` });
    }
    for (;;) {
      const over = this.modelOverrun(maxOutputTokens, price);
      if (!over) break;
      await this.stopAtBudget(over);
    }
    await this.reserveTenant(maxOutputTokens, price);
  }

  /** After a model call: settle the tenant's reservation with what the call really used. */
  async afterModelCall(turnUsage: TokenUsage, maxOutputTokens: number): Promise<void> {
    const reserved = this.reservation(maxOutputTokens);
    this.lastInputTokens = turnUsage.inputTokens;
    if (!this.tenantCapped()) return;
    const price = priceOf(this.d.spec.model);
    const tokens = turnUsage.inputTokens + turnUsage.outputTokens - (reserved.inputTokens + reserved.outputTokens);
    const usd = price ? costOf(turnUsage, price) - costOf(reserved, price) : 0;
    await this.d.store.chargeTenant({ tenant: this.tenant(), tokens, usd, settle: true });
  }

  /** Before a tool call: wait until the tool-call and time budgets have room. */
  async beforeToolCall(): Promise<void> {
    for (;;) {
      const b = this.budgets;
      const over =
        b.toolCalls !== undefined && this.d.state.toolCalls >= b.toolCalls
          ? { budget: 'toolCalls', used: this.d.state.toolCalls, limit: b.toolCalls }
          : this.timeOverrun();
      if (!over) return;
      await this.stopAtBudget(over);
    }
  }

  /** Waiting (for a message, an approval, more time) does not spend the wall-clock budget. */
  pauseClock(): void {
    if (this.activeSince === PAUSED) return;
    this.activeMs += now() - this.activeSince;
    this.activeSince = PAUSED;
  }

  resumeClock(): void {
    if (this.activeSince === PAUSED) this.activeSince = now();
  }

  private activeNowMs(): number {
    return this.activeMs + (this.activeSince === PAUSED ? 0 : now() - this.activeSince);
  }

  private modelOverrun(maxOut: number, price: ReturnType<typeof priceOf>): Overrun | undefined {
    const b = this.budgets;
    const u = this.d.usage;
    if (b.inputTokens !== undefined && u.inputTokens >= b.inputTokens) return { budget: 'inputTokens', used: u.inputTokens, limit: b.inputTokens };
    // A call reserves its maxOutputTokens before it starts: the budget is never passed by more than one call's input.
    if (b.outputTokens !== undefined && u.outputTokens + maxOut > b.outputTokens) return { budget: 'outputTokens', used: u.outputTokens, limit: b.outputTokens, reserve: maxOut };
    if (b.usd !== undefined && price) {
      const after = costOf({ inputTokens: u.inputTokens, outputTokens: u.outputTokens + maxOut }, price);
      if (after > b.usd) return { budget: 'usd', used: round(costOf(u, price)), limit: b.usd, reserve: round(after - costOf(u, price)) };
    }
    return this.timeOverrun();
  }

  private timeOverrun(): Overrun | undefined {
    const limit = this.budgets.wallClockSec;
    if (limit === undefined) return undefined;
    const used = this.activeNowMs() / 1000;
    return used >= limit ? { budget: 'wallClockSec', used: Math.round(used), limit } : undefined;
  }

  /** Stop in `budget_exhausted`, holding no container, until budget is added. */
  private async stopAtBudget(over: Overrun): Promise<void> {
    const { state, emit } = this.d;
    state.status = 'budget_exhausted';
    state.waitingFor = 'budget';
    state.exhausted = over;
    emit('budget.exhausted', over);
    const why = `the ${over.budget} budget is spent (${over.used} of ${over.limit}${over.reserve !== undefined ? `; the next model call reserves ${over.reserve}` : ''})`;
    emit('session.status', { status: 'budget_exhausted', reason: why });
    await this.d.sandbox.suspend(`the ${over.budget} budget is spent`);
    await this.d.flush();
    this.pauseClock();
    const before = this.added;
    await condition(() => this.added > before);
    this.resumeClock();
    delete state.exhausted;
    delete state.waitingFor;
    state.status = 'running';
    emit('session.status', { status: 'running', reason: 'budget added' });
  }

  private tenant(): string {
    return this.d.spec.tenant ?? 'default';
  }

  private tenantCapped(): boolean {
    return this.admission?.dailyTokens !== undefined || this.admission?.dailyUsd !== undefined;
  }

  /** What a model call reserves: its maxOutputTokens and, as a guess at its input, the last call's. */
  private reservation(maxOut: number): TokenUsage {
    return { inputTokens: this.lastInputTokens, outputTokens: maxOut };
  }

  /** Reserve the call's share of the tenant's daily ceilings; at the ceiling, wait and try again. */
  private async reserveTenant(maxOut: number, price: ReturnType<typeof priceOf>): Promise<void> {
    if (!this.tenantCapped()) return;
    const r = this.reservation(maxOut);
    const tokens = r.inputTokens + r.outputTokens;
    const usd = price ? costOf(r, price) : 0;
    for (let waited = false, delayMs = TENANT_RETRY_MIN_MS; ; waited = true, delayMs = Math.min(delayMs * 2, TENANT_RETRY_MAX_MS)) {
      const charge = await this.d.store.chargeTenant({ tenant: this.tenant(), tokens, usd, settle: false });
      if (charge.ok) {
        if (waited) {
          this.resumeClock();
          this.d.state.status = 'running';
          delete this.d.state.waitingFor;
          delete this.d.state.exhausted;
          this.d.emit('session.status', { status: 'running', reason: "the tenant's daily ceiling has room again" });
        }
        return;
      }
      if (!waited) {
        const a = this.admission;
        const byTokens = a?.dailyTokens !== undefined && charge.tokens + tokens > a.dailyTokens;
        const over: Overrun = byTokens
          ? { budget: `tenant ${this.tenant()} daily tokens`, used: charge.tokens, limit: a!.dailyTokens!, reserve: tokens }
          : { budget: `tenant ${this.tenant()} daily usd`, used: round(charge.usd), limit: a?.dailyUsd ?? 0, reserve: round(usd) };
        this.d.state.status = 'budget_exhausted';
        this.d.state.waitingFor = 'budget';
        this.d.state.exhausted = over;
        this.d.emit('budget.exhausted', over);
        this.d.emit('session.status', { status: 'budget_exhausted', reason: `tenant ${this.tenant()} reached its daily ceiling` });
        await this.d.sandbox.suspend("the tenant's daily ceiling is reached");
        await this.d.flush();
        this.pauseClock();
      }
      await condition(() => false, delayMs);
    }
  }

  // --- approvals --------------------------------------------------------

  /**
   * Apply the approval policy to a validated call: undefined to run it, or the result the model
   * gets instead (denied by a rule, by a person, or by no answer in time).
   */
  async gate(call: ToolCall, input: unknown): Promise<ToolResult | undefined> {
    const policy: ApprovalPolicy | undefined = this.d.spec.policy;
    if (!policy && this.remembered.length === 0) return undefined;
    const exact = canonicalJson(input ?? null);
    // Approvals remembered for this session come first; then the policy.
    const remembered = evaluatePolicy({ default: 'deny', rules: this.remembered }, call.name, input, exact);
    if (remembered.rule) return undefined;
    let decision = evaluatePolicy(policy, call.name, input, exact);
    // Arguments stored by reference were shortened here: a rule that reads them cannot see them whole.
    if (call.inputRef && decision.action === 'allow' && (policy?.rules ?? []).some((r) => (r.tool === '*' || r.tool === call.name) && (r.command || r.path))) {
      decision = { action: 'ask', rule: { tool: call.name, action: 'ask', reason: 'the arguments are too large to check against the policy' } };
    }
    const reason = decision.rule?.reason;
    if (decision.action === 'allow') return undefined;
    if (decision.action === 'deny') return denied(call, `Denied by policy${reason ? `: ${reason}` : ''}. This call will not run; try another way.`);
    return this.ask(call, input, policy?.timeoutSec ?? DEFAULT_APPROVAL_TIMEOUT_SEC, decision.rule, exact);
  }

  private async ask(call: ToolCall, input: unknown, timeoutSec: number, rule: PolicyRule | undefined, exact: string): Promise<ToolResult | undefined> {
    const { state, emit } = this.d;
    const p: Pending = { callId: call.id, tool: call.name, summary: describeCall(call.name, input), since: now(), ...(rule?.reason ? { reason: rule.reason } : {}) };
    this.pending.set(call.id, p);
    state.status = 'waiting';
    state.waitingFor = 'approval';
    state.pendingApprovals = [{ callId: p.callId, tool: p.tool, summary: p.summary, since: new Date(p.since).toISOString(), ...(p.reason ? { reason: p.reason } : {}) }];
    emit('approval.requested', { step: state.step, callId: call.id, tool: call.name, input: call.input, ...(rule ? { rule } : {}), ...(rule?.reason ? { reason: rule.reason } : {}), timeoutSec });
    emit('session.status', { status: 'waiting', reason: `waiting for approval of call ${call.id}` });
    await this.d.flush();
    this.pauseClock();
    const answered = (): boolean => p.answer !== undefined;
    const idleSec = sandboxLimits(this.d.spec.sandbox).idleSuspendSec;
    const first = Math.min(idleSec, timeoutSec);
    let got = first > 0 ? await condition(answered, first * 1000) : answered();
    if (!got && timeoutSec > first) {
      // A long wait holds no container; the call restores it when it runs.
      await this.d.sandbox.suspend(`waiting for approval of call ${call.id}`);
      await this.d.flush();
      got = await condition(answered, (timeoutSec - first) * 1000);
    }
    this.resumeClock();
    this.pending.delete(call.id);
    this.answered.set(call.id, p.answer ? `${p.answer.decision === 'approve' ? 'approved' : 'denied'} by ${p.answer.by}` : 'denied: it timed out');
    delete state.pendingApprovals;
    delete state.waitingFor;
    state.status = 'running';
    const waitedSec = Math.round((now() - p.since) / 1000);
    const a = p.answer;
    if (!a) {
      emit('approval.decided', { callId: call.id, decision: 'timeout', by: 'keel', reason: `no answer within ${timeoutSec} s`, waitedSec });
      emit('session.status', { status: 'running', reason: `approval of call ${call.id} timed out` });
      return denied(call, `Denied: nobody approved this call within ${timeoutSec} s.`);
    }
    emit('approval.decided', { callId: call.id, decision: a.decision, by: a.by, waitedSec, ...(a.remember ? { remember: true } : {}), ...(a.reason ? { reason: a.reason } : {}) });
    emit('session.status', { status: 'running', reason: `call ${call.id} ${a.decision === 'approve' ? 'approved' : 'denied'} by ${a.by}` });
    if (a.decision === 'deny') return denied(call, `Denied by ${a.by}${a.reason ? `: ${a.reason}` : ''}. This call will not run.`);
    if (a.remember) this.remembered.push({ tool: call.name, action: 'allow', exact, reason: `remembered approval by ${a.by}` });
    return undefined;
  }

  private validateAddition(b: BudgetAddition): void {
    const entries = Object.entries(b?.add ?? {});
    if (entries.length === 0) throw new Error('add at least one budget');
    if (typeof b.by !== 'string' || !b.by) throw new Error('an addition says who made it (by)');
    for (const [k, v] of entries) {
      if (!['inputTokens', 'outputTokens', 'usd', 'wallClockSec', 'toolCalls'].includes(k)) throw new Error(`unknown budget ${k}`);
      if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw new Error(`${k} must be a positive number`);
    }
    const set = Object.keys(this.budgets);
    if (!entries.some(([k]) => set.includes(k))) {
      throw new Error(`this session has no ${entries.map(([k]) => k).join(' or ')} budget${set.length ? ` (it has ${set.join(', ')})` : ' (it has none)'}`);
    }
  }

  private validateAnswer(a: ApprovalAnswer): void {
    if (!a || typeof a.callId !== 'string') throw new Error('an answer names a call id');
    if (a.decision !== 'approve' && a.decision !== 'deny') throw new Error('decision must be approve or deny');
    if (typeof a.by !== 'string' || !a.by) throw new Error('an answer says who gave it (by)');
    const p = this.pending.get(a.callId);
    const before = p?.answer ? `${p.answer.decision === 'approve' ? 'approved' : 'denied'} by ${p.answer.by}` : this.answered.get(a.callId);
    if (before) throw new Error(`call ${a.callId} was already answered (${before})`);
    if (!p) {
      const waiting = [...this.pending.keys()];
      throw new Error(`no call ${a.callId} is waiting for approval in this session${waiting.length ? ` (waiting: ${waiting.join(', ')})` : ' (none is waiting)'}`);
    }
  }
}


function denied(call: ToolCall, output: string): ToolResult {
  return { callId: call.id, name: call.name, ok: false, error: 'Denied', output };
}

function round(usd: number): number {
  return Math.round(usd * 1e6) / 1e6;
}
