/** `keel serve` in this process on a free port, over a test stack, with API keys made as the owner role. */
import { buildApi } from '../../api/server';
import { connect, createApiKey, EventHub, migrate } from '../../store';
import { testOwnerUrl } from './env';
import type { Stack } from './stack';

export interface TestApi {
  url: string;
  /** A new key for `tenant`. */
  key(tenant: string): Promise<string>;
  /** `fetch` of `path` with `key`, JSON in and out. */
  call(key: string | undefined, method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  stop(): Promise<void>;
}

export async function startApi(stack: Stack): Promise<TestApi> {
  const owner = connect(testOwnerUrl());
  await migrate(owner);
  const hub = new EventHub(stack.sql);
  const app = await buildApi({ sql: stack.sql, client: stack.client, blobs: stack.blobs, hub }, { logger: false });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    url,
    key: async (tenant) => (await createApiKey(owner, tenant)).key,
    async call(key, method, path, body, headers = {}) {
      const res = await fetch(`${url}${path}`, {
        method,
        headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : undefined };
    },
    async stop() {
      await app.close();
      await hub.close();
      await owner.end({ timeout: 2 });
    },
  };
}
