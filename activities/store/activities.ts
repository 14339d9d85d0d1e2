import { Context } from '@temporalio/activity';
import type { Admission, StoreActivities, TranscriptCopy } from '../../common/activities';
import type { ChainHead, SessionEvent } from '../../common/events';
import { admitSession, appendEvents, chargeTenant, getEvents, tenantLimits, type Sql } from '../../store';
import { withStoreErrors } from './errors';

/** Dependencies of the store activities. */
export interface StoreActivityDeps {
  /** A pool from {@link connect}; the caller owns it (and ends it). */
  sql: Sql;
}

/** Store activities for the session worker. */
export function createStoreActivities({ sql }: StoreActivityDeps) {
  return {
    /**
     * Append a batch of a session's events (idempotent by `seq`, hash-chained) and update
     * the session row from `session.started` / `session.status` / `session.ended`. Returns the
     * chain head, which lands in the workflow history as this local activity's result.
     * @throws ApplicationFailure `Store.Unavailable` (retryable) when Postgres cannot be reached.
     */
    async recordEvents({ sessionId, events }: { sessionId: string; events: SessionEvent[] }): Promise<ChainHead | undefined> {
      return withStoreErrors(() => appendEvents(sql, sessionId, events));
    },

    /**
     * A fork's start: the transcript events of `from` up to `throughSeq`, copied into this session from
     * `startSeq` on (chained like any write), each naming the event it copies. Idempotent: a retry
     * writes nothing new.
     */
    async copyTranscript({ sessionId, from, throughSeq, startSeq }: { sessionId: string; from: string; throughSeq: number; startSeq: number }): Promise<TranscriptCopy> {
      return withStoreErrors(async () => {
        const source = await getEvents(sql, from, { throughSeq, types: ['message.user', 'model.call', 'tool.call', 'tool.result'] });
        const copies = source.map((e, i) => ({ seq: startSeq + i, type: e.type, data: { ...e.data, copiedFrom: { sessionId: from, seq: e.seq } } }) as SessionEvent);
        const head = await appendEvents(sql, sessionId, copies);
        return {
          copied: copies.length,
          steps: source.reduce((n, e) => (e.type === 'model.call' ? Math.max(n, e.data.step) : n), 0),
          toolCalls: source.filter((e) => e.type === 'tool.call').length,
          ...(head ? { head } : {}),
        };
      });
    },

    async admitSession({ sessionId, tenant }: { sessionId: string; tenant: string }): Promise<Admission> {
      return withStoreErrors(async () => {
        const a = await admitSession(sql, sessionId, tenant);
        const limits = await tenantLimits(sql, tenant);
        return {
          admitted: a.admitted,
          running: a.running,
          ...(a.max !== undefined ? { maxRunning: a.max } : {}),
          ...(limits?.dailyTokens !== undefined ? { dailyTokens: limits.dailyTokens } : {}),
          ...(limits?.dailyUsd !== undefined ? { dailyUsd: limits.dailyUsd } : {}),
          ...(limits?.webhookUrl !== undefined ? { webhookUrl: limits.webhookUrl } : {}),
        };
      });
    },

    async chargeTenant({ tenant, tokens, usd, settle }: { tenant: string; tokens: number; usd: number; settle: boolean }): Promise<{ ok: boolean; tokens: number; usd: number }> {
      // Keyed by the activity, so a retry after a lost answer does not charge twice.
      const { workflowExecution: wf, activityId } = Context.current().info;
      const id = `${wf?.workflowId}/${wf?.runId}/${activityId}`;
      return withStoreErrors(() => chargeTenant(sql, { key: id, tenant, tokens, usd, settle }));
    },
  } satisfies StoreActivities;
}
