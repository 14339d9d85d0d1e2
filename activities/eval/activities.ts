/** Activities of the eval workflow (workflows/eval.ts): facts about an ended rollout, read from the event log. */
import type { EvalActivities, RolloutFacts } from '../../common/activities';
import { costOf, priceOf } from '../../common/prices';
import type { ModelSpec } from '../../common/types';
import { getEvents, type Sql } from '../../store';
import { withStoreErrors } from '../store/errors';

export interface EvalActivityDeps {
  /** A pool from `connect`; the caller owns it. */
  sql: Sql;
}

export function createEvalActivities({ sql }: EvalActivityDeps) {
  return {
    /** @throws ApplicationFailure `Store.Unavailable` (retryable) when Postgres cannot be reached. */
    async rolloutFacts({ sessionId, model }: { sessionId: string; model: ModelSpec }): Promise<RolloutFacts> {
      return withStoreErrors(async () => {
        const events = await getEvents(sql, sessionId);
        let lastSnapshot: string | undefined;
        let contract: RolloutFacts['contract'];
        const usage = { inputTokens: 0, outputTokens: 0 };
        for (const e of events) {
          if (e.type === 'tool.result' && e.data.snapshot && !e.data.copiedFrom) lastSnapshot = e.data.snapshot.id;
          else if (e.type === 'session.contract') contract = e.data;
          else if (e.type === 'model.call' && !e.data.copiedFrom) {
            usage.inputTokens += e.data.usage.inputTokens;
            usage.outputTokens += e.data.usage.outputTokens;
          }
        }
        const first = events[0];
        const last = events[events.length - 1];
        const price = priceOf(model);
        return {
          ...(lastSnapshot ? { lastSnapshot } : {}),
          ...(contract ? { contract } : {}),
          wallMs: first && last ? last.at.getTime() - first.at.getTime() : 0,
          ...(price ? { costUsd: costOf(usage, price) } : {}),
        };
      });
    },
  } satisfies EvalActivities;
}
