/** Postgres: the append-only event log and the session index. Used by the store activities (writes), and the CLI and API (reads). */
export { connect, migrate, type Sql, type ConnectOptions } from './db';
export { migrations, type Migration } from './migrations';
export { appendEvents, EVENTS_CHANNEL, storable } from './events';
export { firstEvent, getEvents, getSession, listSessions, toolResultOf, type SessionRow } from './queries';
