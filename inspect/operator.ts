/**
 * Operator control as the event log tells it: a session's budgets against what it
 * spent, the calls waiting for approval, and how many results were deliberate faults.
 */
import type { EventRow } from '../common/events';
import { costOf, priceOf } from '../common/prices';
import type { Budgets } from '../common/types';
import type { Sql } from '../store';

export interface OperatorView {
  budgets: Budgets;
  spent: { inputTokens: number; outputTokens: number; usd?: number; toolCalls: number; activeSec?: number };
  /** The budget the session stopped at, if it is stopped at one. */
  exhausted?: { budget: string; used: number; limit: number; reserve?: number };
  pending: PendingApproval[];
  approvals: number;
  injected: number;
}

export interface PendingApproval {
  sessionId: string;
  callId: string;
  tool: string;
  input: unknown;
  reason?: string;
  since: Date;
  timeoutSec: number;
}

/** Budgets, spending, pending approvals and injected faults, from a session's events. */
export function operatorView(events: readonly EventRow[]): OperatorView {
  const budgets: Budgets = {};
  const spent: OperatorView['spent'] = { inputTokens: 0, outputTokens: 0, toolCalls: 0 };
  const requested = new Map<string, PendingApproval>();
  let exhausted: OperatorView['exhausted'];
  let approvals = 0;
  let injected = 0;
  let price: ReturnType<typeof priceOf>;
  for (const e of events) {
    switch (e.type) {
      case 'session.started':
        Object.assign(budgets, e.data.spec?.budgets ?? {});
        price = e.data.spec ? priceOf(e.data.spec.model) : undefined;
        break;
      case 'budget.added':
        for (const [k, v] of Object.entries(e.data.add) as Array<[keyof Budgets, number]>) budgets[k] = (budgets[k] ?? 0) + v;
        exhausted = undefined;
        break;
      case 'budget.exhausted':
        exhausted = e.data;
        break;
      case 'session.status':
        if (e.data.status === 'running') exhausted = undefined;
        break;
      case 'model.call':
        // A fork's copies were spent by the original.
        if (e.data.copiedFrom) break;
        spent.inputTokens += e.data.usage.inputTokens;
        spent.outputTokens += e.data.usage.outputTokens;
        break;
      case 'tool.call':
        spent.toolCalls++;
        break;
      case 'tool.result':
        if (e.data.injected) injected++;
        break;
      case 'approval.requested':
        approvals++;
        requested.set(e.data.callId, {
          sessionId: e.sessionId,
          callId: e.data.callId,
          tool: e.data.tool,
          input: e.data.input,
          ...(e.data.reason ? { reason: e.data.reason } : {}),
          since: e.at,
          timeoutSec: e.data.timeoutSec,
        });
        break;
      case 'approval.decided':
        requested.delete(e.data.callId);
        break;
      case 'session.ended':
        if (e.data.spent?.activeSec !== undefined) spent.activeSec = e.data.spent.activeSec;
        requested.clear();
        break;
    }
  }
  if (price) spent.usd = Math.round(costOf(spent, price) * 1e6) / 1e6;
  return { budgets, spent, ...(exhausted ? { exhausted } : {}), pending: [...requested.values()], approvals, injected };
}

/** Every call waiting for approval in a live session, oldest first. */
export async function pendingApprovals(sql: Sql): Promise<PendingApproval[]> {
  const rows = await sql<{ session_id: string; at: Date; data: { callId: string; tool: string; input: unknown; reason?: string; timeoutSec: number } }[]>`
    select r.session_id, r.at, r.data from events r
    where r.session_id in (select id from sessions where status in ('running', 'waiting', 'budget_exhausted'))
      and r.type = 'approval.requested'
      and not exists (
        select 1 from events d where d.session_id = r.session_id and d.type = 'approval.decided' and d.data->>'callId' = r.data->>'callId' and d.seq > r.seq)
    order by r.at`;
  return rows.map((r) => ({
    sessionId: r.session_id,
    callId: r.data.callId,
    tool: r.data.tool,
    input: r.data.input,
    ...(r.data.reason ? { reason: r.data.reason } : {}),
    since: r.at,
    timeoutSec: r.data.timeoutSec,
  }));
}
