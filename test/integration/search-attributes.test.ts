/**
 * Sessions carry Temporal search attributes (KeelTenant, KeelStatus, KeelModel) and a memo with the
 * task, on a real dev server started the way `keel dev` starts it: an operator can find a tenant's
 * waiting sessions with a list query, and KeelStatus follows the session to its end.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import { MEMO_TASK_CHARS } from '../../common/search-attributes';
import type { SessionSpec } from '../../common/types';
import { ensureSandboxImage, uniqueId } from '../helpers/env';
import { recordHistory } from '../helpers/history';
import { startStack, type Stack } from '../helpers/stack';

let stack: Stack;

before(async () => {
  await ensureSandboxImage(new Docker());
  stack = await startStack('search-attrs-host');
});

after(async () => {
  await stack?.stop();
});

/** The ids a visibility query returns, once it returns `want` of them (visibility lags the history a little). */
async function listed(query: string, want: number): Promise<string[]> {
  let ids: string[] = [];
  for (let i = 0; i < 100; i++) {
    ids = [];
    for await (const w of stack.client.temporal.workflow.list({ query })) ids.push(w.workflowId);
    if (ids.length >= want) return ids;
    await new Promise((r) => setTimeout(r, 200));
  }
  return ids;
}

test('a session is found by tenant, status and model, its status follows it, and its memo holds the task', { timeout: 120_000 }, async () => {
  const tenant = uniqueId('acme');
  const other = uniqueId('other');
  const task = `list the workspace ${'and more '.repeat(100)}`;
  const spec = (t: string): SessionSpec => ({
    task,
    tenant: t,
    keepAlive: true,
    model: { provider: 'scripted', model: 'search-attrs', script: [{ toolCalls: [{ name: 'shell', input: { command: 'ls' } }] }, { text: 'listed' }, { text: 'bye' }] },
  });
  const id = uniqueId('sa');
  const elsewhere = uniqueId('sa-other');
  await stack.client.start(spec(tenant), { sessionId: id });
  await stack.client.start(spec(other), { sessionId: elsewhere });

  // Both wait for a message; only one is the tenant's.
  assert.deepEqual(await listed(`KeelTenant = '${tenant}' AND KeelStatus = 'waiting'`, 1), [id]);
  assert.deepEqual(await listed(`KeelModel = 'scripted:search-attrs' AND KeelStatus = 'waiting' AND KeelTenant IN ('${tenant}', '${other}')`, 2).then((ids) => ids.sort()), [id, elsewhere].sort());

  const described = await stack.client.temporal.workflow.getHandle(id).describe();
  assert.equal(described.memo?.tenant, tenant);
  const memoTask = String(described.memo?.task);
  assert.equal(memoTask.length, MEMO_TASK_CHARS, 'a long task is cut in the memo');
  assert.ok(task.startsWith(memoTask.slice(0, -1)) && memoTask.endsWith('…'));

  await stack.client.message(id, 'one more thing');
  await stack.client.closeSession(id);
  const result = await stack.client.result(id);
  assert.equal(result.status, 'completed', result.error);
  assert.deepEqual(await listed(`KeelTenant = '${tenant}' AND KeelStatus = 'completed'`, 1), [id]);
  assert.deepEqual(await listed(`KeelTenant = '${tenant}' AND KeelStatus = 'waiting'`, 0), []);

  await stack.client.cancel(elsewhere);
  await stack.client.result(elsewhere).catch(() => undefined);
  assert.deepEqual(await listed(`KeelTenant = '${other}' AND KeelStatus = 'cancelled'`, 1), [elsewhere]);
  await recordHistory(stack.client.temporal, id, 'search-attributes-session.json');
});
