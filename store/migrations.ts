/**
 * Schema migrations, in order. Append new versions; never edit an applied one
 * (a database that already ran it would silently differ from a fresh one).
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'sessions and append-only events',
    sql: `
      create table sessions (
        id text primary key,
        tenant text not null,
        task text not null,
        model text not null,
        status text not null,
        created_at timestamptz default now(),
        updated_at timestamptz,
        ended_at timestamptz,
        result jsonb,
        workflow_run_id text
      );
      create index sessions_created_at_idx on sessions (created_at desc);

      create table events (
        session_id text not null,
        seq int not null,
        type text not null,
        at timestamptz not null default clock_timestamp(),
        data jsonb not null,
        primary key (session_id, seq)
      );

      create function keel_events_append_only() returns trigger
      language plpgsql as $$
      begin
        raise exception 'events are append-only: % on events is not allowed', tg_op
          using errcode = 'restrict_violation';
      end;
      $$;

      create trigger events_append_only
        before update or delete on events
        for each row execute function keel_events_append_only();
      -- TRUNCATE bypasses row triggers; close that door too.
      create trigger events_no_truncate
        before truncate on events
        for each statement execute function keel_events_append_only();
    `,
  },
  {
    version: 2,
    name: 'hash-chained events; the workers role gets only what it needs',
    sql: `
      alter table events add column hash text, add column prev_hash text;
      -- Least privilege: tables belong to the role that runs migrations (the owner); workers and the
      -- CLI connect as a member of keel_app, which may read everything and only append to events.
      -- Only an owner (or a superuser) can disable the append-only triggers.
      do $$
      begin
        if exists (select 1 from pg_roles where rolname = 'keel_app') then
          revoke all on events, sessions, schema_migrations from keel_app;
          grant select, insert on events to keel_app;
          grant select, insert, update on sessions to keel_app;
          grant select on schema_migrations to keel_app;
        end if;
      end
      $$;
    `,
  },
  {
    version: 3,
    name: 'tenant caps: running sessions, daily tokens and dollars',
    sql: `
      create table tenant_limits (
        tenant text primary key,
        max_running int check (max_running > 0),
        daily_tokens bigint check (daily_tokens > 0),
        daily_usd numeric check (daily_usd > 0)
      );
      -- Spending per tenant and UTC day; a model call reserves before it runs and settles after.
      create table tenant_usage (
        tenant text not null,
        day date not null,
        tokens bigint not null default 0,
        usd numeric not null default 0,
        primary key (tenant, day)
      );
      -- Sessions a tenant's running cap let in; they count while their session is live.
      create table tenant_admissions (
        session_id text primary key,
        tenant text not null,
        admitted_at timestamptz not null default now()
      );
      create index tenant_admissions_tenant_idx on tenant_admissions (tenant);
      -- Each reservation and settlement once, by key: a retried activity does not charge twice.
      create table tenant_charges (
        key text primary key,
        tenant text not null,
        day date not null,
        tokens bigint not null,
        usd numeric not null,
        at timestamptz not null default now()
      );
      do $$
      begin
        if exists (select 1 from pg_roles where rolname = 'keel_app') then
          grant select on tenant_limits to keel_app;
          grant select, insert, update on tenant_usage, tenant_admissions to keel_app;
          grant select, insert on tenant_charges to keel_app;
        end if;
      end
      $$;
    `,
  },
  {
    version: 4,
    name: 'API keys, each bound to a tenant, stored hashed',
    sql: `
      -- A key is keel_<id>_<secret>: the id finds the row, the secret is kept only as its sha256.
      create table api_keys (
        id text primary key,
        tenant text not null,
        secret_sha256 bytea not null,
        created_at timestamptz not null default now(),
        revoked_at timestamptz
      );
      create index api_keys_tenant_idx on api_keys (tenant);
      -- The API server (keel_app) may only check keys; creating and revoking them is the owner's.
      do $$
      begin
        if exists (select 1 from pg_roles where rolname = 'keel_app') then
          grant select on api_keys to keel_app;
        end if;
      end
      $$;
    `,
  },
];
