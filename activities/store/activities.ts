import type { StoreActivities } from '../../common/activities';
import type { ChainHead, SessionEvent } from '../../common/events';
import { appendEvents, type Sql } from '../../store';
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
  } satisfies StoreActivities;
}
