/**
 * Tenant caps, enforced across workers: every check-and-spend is one statement
 * (or one transaction under a per-tenant advisory lock), so two workers racing
 * cannot both take the last slot or the last dollar.
 */
import type { Sql } from './db';

export interface TenantLimits {
  tenant: string;
  maxRunning?: number;
  dailyTokens?: number;
  dailyUsd?: number;
  /** Where its sessions' webhooks go when their spec names none. */
  webhookUrl?: string;
}

/** A tenant's caps; undefined when it has none. */
export async function tenantLimits(sql: Sql, tenant: string): Promise<TenantLimits | undefined> {
  const [r] = await sql<{ max_running: number | null; daily_tokens: string | null; daily_usd: string | null; webhook_url: string | null }[]>`
    select max_running, daily_tokens, daily_usd, webhook_url from tenant_limits where tenant = ${tenant}`;
  if (!r) return undefined;
  return {
    tenant,
    ...(r.max_running !== null ? { maxRunning: r.max_running } : {}),
    ...(r.daily_tokens !== null ? { dailyTokens: Number(r.daily_tokens) } : {}),
    ...(r.daily_usd !== null ? { dailyUsd: Number(r.daily_usd) } : {}),
    ...(r.webhook_url !== null ? { webhookUrl: r.webhook_url } : {}),
  };
}

/** Set a tenant's caps and webhook (an operator's action: the owner role runs it). Unset fields remove that cap or webhook. */
export async function setTenantLimits(sql: Sql, limits: TenantLimits): Promise<void> {
  await sql`
    insert into tenant_limits (tenant, max_running, daily_tokens, daily_usd, webhook_url)
    values (${limits.tenant}, ${limits.maxRunning ?? null}, ${limits.dailyTokens ?? null}, ${limits.dailyUsd ?? null}, ${limits.webhookUrl ?? null})
    on conflict (tenant) do update set max_running = excluded.max_running, daily_tokens = excluded.daily_tokens, daily_usd = excluded.daily_usd,
      webhook_url = excluded.webhook_url`;
}

/** Live sessions a tenant's running cap counts. */
const LIVE = ['running', 'waiting', 'budget_exhausted'];

/**
 * Let a session in under its tenant's running cap, or say how full it is. Idempotent per session;
 * serialised per tenant, so racing starts never exceed the cap.
 */
export async function admitSession(sql: Sql, sessionId: string, tenant: string): Promise<{ admitted: boolean; running: number; max?: number }> {
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext(${`keel-tenant:${tenant}`}))`;
    const [limits] = await tx<{ max_running: number | null }[]>`select max_running from tenant_limits where tenant = ${tenant}`;
    const max = limits?.max_running ?? undefined;
    const [already] = await tx<{ n: number }[]>`select count(*)::int as n from tenant_admissions where session_id = ${sessionId}`;
    const [{ running } = { running: 0 }] = await tx<{ running: number }[]>`
      select count(*)::int as running from tenant_admissions a join sessions s on s.id = a.session_id
      where a.tenant = ${tenant} and s.status in ${tx(LIVE)} and a.session_id <> ${sessionId}`;
    if ((already?.n ?? 0) > 0) return { admitted: true, running, ...(max !== undefined ? { max } : {}) };
    if (max !== undefined && running >= max) return { admitted: false, running, max };
    await tx`insert into tenant_admissions (session_id, tenant) values (${sessionId}, ${tenant}) on conflict do nothing`;
    return { admitted: true, running: running + 1, ...(max !== undefined ? { max } : {}) };
  });
}

/**
 * Charge a tenant's daily ceilings (UTC day) once per `key`. A reservation (`settle: false`) is
 * refused when it would pass a ceiling; a settlement (what a call really cost minus what it
 * reserved, either sign) always applies. Serialised per tenant, so racing workers cannot both
 * spend the last of a ceiling; a retried charge with the same key changes nothing.
 */
export async function chargeTenant(
  sql: Sql,
  charge: { key: string; tenant: string; tokens: number; usd: number; settle: boolean },
): Promise<{ ok: boolean; tokens: number; usd: number }> {
  const { key, tenant, settle } = charge;
  const tokens = Math.round(charge.tokens);
  const usd = charge.usd;
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext(${`keel-tenant:${tenant}`}))`;
    const day = tx`(now() at time zone 'utc')::date`;
    const [used] = await tx<{ tokens: string; usd: string }[]>`select tokens, usd from tenant_usage where tenant = ${tenant} and day = ${day}`;
    const now = { tokens: Number(used?.tokens ?? 0), usd: Number(used?.usd ?? 0) };
    const [done] = await tx`select 1 from tenant_charges where key = ${key}`;
    if (done) return { ok: true, ...now };
    if (!settle && (tokens > 0 || usd > 0)) {
      const [l] = await tx<{ daily_tokens: string | null; daily_usd: string | null }[]>`
        select daily_tokens, daily_usd from tenant_limits where tenant = ${tenant}`;
      const over = (l?.daily_tokens != null && now.tokens + tokens > Number(l.daily_tokens)) || (l?.daily_usd != null && now.usd + usd > Number(l.daily_usd));
      if (over) return { ok: false, ...now };
    }
    await tx`insert into tenant_charges (key, tenant, day, tokens, usd) values (${key}, ${tenant}, ${day}, ${tokens}, ${usd})`;
    const [r] = await tx<{ tokens: string; usd: string }[]>`
      insert into tenant_usage as u (tenant, day, tokens, usd) values (${tenant}, ${day}, ${tokens}, ${usd})
      on conflict (tenant, day) do update set tokens = u.tokens + excluded.tokens, usd = u.usd + excluded.usd
      returning tokens, usd`;
    return { ok: true, tokens: Number(r!.tokens), usd: Number(r!.usd) };
  });
}

/** What a tenant spent today (UTC). */
export async function tenantUsage(sql: Sql, tenant: string): Promise<{ tokens: number; usd: number }> {
  const [r] = await sql<{ tokens: string; usd: string }[]>`
    select tokens, usd from tenant_usage where tenant = ${tenant} and day = (now() at time zone 'utc')::date`;
  return { tokens: Number(r?.tokens ?? 0), usd: Number(r?.usd ?? 0) };
}
