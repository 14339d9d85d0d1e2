import postgres from 'postgres';
import { migrations as defaultMigrations, type Migration } from './migrations';

export type Sql = postgres.Sql;

/** Options for {@link connect}. */
export interface ConnectOptions {
  /** Pool size. @default 4 */
  max?: number;
  /** Seconds to wait for a connection before failing. @default 10 */
  connectTimeoutSec?: number;
}

/**
 * Open a small connection pool. Postgres notices (e.g. "relation already
 * exists, skipping") are silenced: they are not errors and would litter worker logs.
 */
export function connect(databaseUrl: string, options: ConnectOptions = {}): Sql {
  return postgres(databaseUrl, {
    max: options.max ?? 4,
    connect_timeout: options.connectTimeoutSec ?? 10,
    onnotice: () => {},
  });
}

/** Arbitrary constant key for the migration advisory lock ("keelmig" in ASCII). */
const MIGRATION_LOCK_KEY = 0x6b65656c6d6967n;

/** Versions not yet applied, read without DDL or locks (a role that may only read can ask). */
export async function pendingMigrations(sql: Sql, migrations: readonly Migration[] = defaultMigrations): Promise<number[]> {
  const [t] = await sql<{ exists: boolean }[]>`select to_regclass('schema_migrations') is not null as exists`;
  const done = new Set(t?.exists ? (await sql<{ version: number }[]>`select version from schema_migrations`).map((r) => r.version) : []);
  return migrations.map((m) => m.version).filter((v) => !done.has(v));
}

/** The schema needs migrations the connected role may not apply (it does not own the tables). */
export class SchemaOutdatedError extends Error {
  constructor(readonly pending: number[], cause: unknown) {
    super(`the database schema lacks migrations ${pending.join(', ')}, and this role may not apply them (${(cause as Error).message})`);
    this.name = 'SchemaOutdatedError';
  }
}

/**
 * Apply every migration not yet recorded in `schema_migrations`, in one
 * transaction holding a transaction-scoped advisory lock, so two processes
 * starting together apply each migration exactly once. Idempotent; a schema that
 * is up to date is only read, so the workers' role (which owns nothing) can call it.
 *
 * @returns the versions applied by this call (empty when already up to date).
 * @throws SchemaOutdatedError when migrations are pending and the role lacks the privileges to apply them.
 */
export async function migrate(sql: Sql, migrations: readonly Migration[] = defaultMigrations): Promise<number[]> {
  const pending = await pendingMigrations(sql, migrations);
  if (pending.length === 0) return [];
  try {
    return await applyMigrations(sql, migrations);
  } catch (err) {
    // 42501 insufficient_privilege; 42000-class: must be owner of the table.
    const code = (err as { code?: unknown }).code;
    if (code === '42501') throw new SchemaOutdatedError(pending, err);
    throw err;
  }
}

async function applyMigrations(sql: Sql, migrations: readonly Migration[]): Promise<number[]> {
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY.toString()}::bigint)`;
    await tx`
      create table if not exists schema_migrations (
        version int primary key,
        name text not null,
        applied_at timestamptz not null default now()
      )`;
    const rows = await tx<{ version: number }[]>`select version from schema_migrations`;
    const done = new Set(rows.map((r) => r.version));
    const applied: number[] = [];
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      await tx.unsafe(m.sql);
      await tx`insert into schema_migrations (version, name) values (${m.version}, ${m.name})`;
      applied.push(m.version);
    }
    return applied;
  });
}
