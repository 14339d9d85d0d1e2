/** Postgres event log and session index: activities for workers, queries for the CLI. */
export { connect, migrate, type Sql, type ConnectOptions } from './db';
export { migrations, type Migration } from './migrations';
export { createStoreActivities, type StoreActivityDeps } from './activities';
export { EVENTS_CHANNEL } from './events';
export { classifyStoreError } from './errors';
export { listSessions, getSession, getEvents, type SessionRow, type EventRow } from './queries';
