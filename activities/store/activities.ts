import type { StoreActivities } from '../../common/activities';
import type { SessionEvent } from '../../common/types';
import type { Sql } from './db';
import { withStoreErrors } from './errors';
import { appendEvents } from './events';

/** Dependencies of the store activities. */
export interface StoreActivityDeps {
  /** A pool from {@link connect}; the caller owns it (and ends it). */
  sql: Sql;
}

/** Store activities for the session worker. */
export function createStoreActivities({ sql }: StoreActivityDeps): StoreActivities {
  return {
    /**
     * Append a batch of a session's events (idempotent by `seq`) and update
     * the session row from `session.started` / `session.status` / `session.ended`.
     * @throws ApplicationFailure `Store.Unavailable` (retryable) when Postgres cannot be reached.
     */
    async recordEvents({ sessionId, events }: { sessionId: string; events: SessionEvent[] }): Promise<void> {
      await withStoreErrors(() => appendEvents(sql, sessionId, events));
    },
  };
}
