/** Postgres: the append-only event log and the session index. Used by the store activities (writes), and the CLI and API (reads). */
export { connect, migrate, pendingMigrations, SchemaOutdatedError, type Sql, type ConnectOptions } from './db';
export { migrations, type Migration } from './migrations';
export { appendEvents, DELTAS_CHANNEL, EVENTS_CHANNEL, storable } from './events';
export { countSessionsByStatus, firstEvent, forksOf, getChainedEvents, getEvents, getSession, listSessions, sessionTotals, toolResultOf, type ChainedEventRow, type SessionRow, type SessionTotals } from './queries';
export { canonicalEvent, chainHash } from './chain';
export { admitSession, chargeTenant, setTenantLimits, tenantLimits, tenantUsage, type TenantLimits } from './tenants';
export { authenticateApiKey, createApiKey, listApiKeys, revokeApiKey, type ApiKeyInfo, type ApiPrincipal } from './apikeys';
export { EventHub, type Subscription } from './subscribe';
