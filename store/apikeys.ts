/**
 * API keys for `keel serve`. A key is `keel_<id>_<secret>`: the id (not secret) finds the row,
 * the secret (32 random bytes) is stored only as its sha256 and compared in constant time, so
 * reading the table gives no usable key. Each key is bound to one tenant. Creating and revoking
 * keys needs the owner role; the API server's role (keel_app) may only read them.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Sql } from './db';

/** A key as `keel apikey list` shows it: never the secret. */
export interface ApiKeyInfo {
  id: string;
  tenant: string;
  createdAt: Date;
  revokedAt: Date | null;
}

/** Who a valid key speaks for. */
export interface ApiPrincipal {
  keyId: string;
  tenant: string;
}

const KEY_FORMAT = /^keel_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
const sha256 = (text: string): Buffer => createHash('sha256').update(text).digest();

/** Make a key for `tenant`; the returned `key` is shown once and exists nowhere else. */
export async function createApiKey(sql: Sql, tenant: string): Promise<{ id: string; tenant: string; key: string }> {
  if (!tenant.trim()) throw new Error('an API key needs a tenant');
  const id = randomBytes(6).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  await sql`insert into api_keys (id, tenant, secret_sha256) values (${id}, ${tenant}, ${sha256(secret)})`;
  return { id, tenant, key: `keel_${id}_${secret}` };
}

/** Every key (revoked ones too), newest first; with `tenant`, only that tenant's. */
export async function listApiKeys(sql: Sql, opts: { tenant?: string } = {}): Promise<ApiKeyInfo[]> {
  const rows = await sql<{ id: string; tenant: string; created_at: Date; revoked_at: Date | null }[]>`
    select id, tenant, created_at, revoked_at from api_keys
    ${opts.tenant !== undefined ? sql`where tenant = ${opts.tenant}` : sql``}
    order by created_at desc, id`;
  return rows.map((r) => ({ id: r.id, tenant: r.tenant, createdAt: r.created_at, revokedAt: r.revoked_at }));
}

/** Revoke a key by its id; false when there is no live key with that id. */
export async function revokeApiKey(sql: Sql, id: string): Promise<boolean> {
  const rows = await sql`update api_keys set revoked_at = now() where id = ${id} and revoked_at is null returning id`;
  return rows.length > 0;
}

/** The tenant a presented key speaks for, or undefined when it is malformed, unknown or revoked. */
export async function authenticateApiKey(sql: Sql, presented: string): Promise<ApiPrincipal | undefined> {
  const m = KEY_FORMAT.exec(presented);
  if (!m) return undefined;
  const [, id, secret] = m as unknown as [string, string, string];
  const [row] = await sql<{ tenant: string; secret_sha256: Buffer }[]>`
    select tenant, secret_sha256 from api_keys where id = ${id} and revoked_at is null`;
  if (!row) return undefined;
  return timingSafeEqual(row.secret_sha256, sha256(secret)) ? { keyId: id, tenant: row.tenant } : undefined;
}
