/**
 * Webhooks on real Temporal, Docker and Postgres, against a local receiver: a signed POST when a session
 * waits for a message, runs out of budget or ends; retried with backoff on 5xx (the same delivery id each
 * time); a 4xx is recorded as failed and the session goes on; a tenant's URL serves sessions that name none.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import Docker from 'dockerode';
import type { EventRow } from '../../common/events';
import type { SessionSpec } from '../../common/types';
import { connect, getEvents, migrate, setTenantLimits } from '../../store';
import { ensureSandboxImage, testOwnerUrl, uniqueId } from '../helpers/env';
import { recordHistory } from '../helpers/history';
import { startStack, type Stack } from '../helpers/stack';

const SECRET = 'webhook-test-secret-0123456789';

interface Received {
  event: string;
  delivery: string;
  body: { id: string; event: string; sessionId: string; data: Record<string, unknown> };
  signed: boolean;
  status: number;
}

let stack: Stack;
let server: Server;
let base: string;
const received: Received[] = [];
/** Per path: the statuses to answer the first delivery seen there, in order (its retries included); 200 otherwise. */
const plans = new Map<string, { statuses: number[]; delivery?: string }>();

function verify(header: string | undefined, body: string): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!m) return false;
  const want = createHmac('sha256', SECRET).update(`${m[1]}.${body}`).digest();
  return timingSafeEqual(want, Buffer.from(m[2]!, 'hex')) && Math.abs(Date.now() / 1000 - Number(m[1])) < 300;
}

before(async () => {
  await ensureSandboxImage(new Docker());
  const owner = connect(testOwnerUrl());
  await migrate(owner);
  await owner.end({ timeout: 2 });
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const delivery = String(req.headers['keel-delivery']);
      const plan = plans.get(req.url ?? '');
      if (plan) plan.delivery ??= delivery;
      const status = (plan?.delivery === delivery ? plan.statuses.shift() : undefined) ?? 200;
      received.push({
        event: String(req.headers['keel-event']),
        delivery,
        body: JSON.parse(body),
        signed: verify(req.headers['keel-signature'] as string | undefined, body),
        status,
      });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  stack = await startStack('webhooks-host', { KEEL_WEBHOOK_SECRET: SECRET });
});

after(async () => {
  await stack?.stop();
  server?.close();
});

const webhookEvents = (events: EventRow[]) => events.filter((e) => e.type === 'webhook.delivered' || e.type === 'webhook.failed');

test('a kept-alive session posts signed webhooks when it waits and when it ends; a 503 is retried with the same delivery id', { timeout: 120_000 }, async () => {
  const id = uniqueId('hook');
  const path = `/${id}`;
  plans.set(path, { statuses: [503, 503] });
  const spec: SessionSpec = {
    task: 'say hi, then wait',
    keepAlive: true,
    webhook: { url: `${base}${path}` },
    model: { provider: 'scripted', model: 'hooks', script: [{ text: 'hi' }, { text: 'got it' }] },
  };
  await stack.client.start(spec, { sessionId: id });
  await stack.client.untilIdle(id);
  await stack.client.message(id, 'thanks');
  await stack.client.untilIdle(id);
  await stack.client.closeSession(id);
  assert.equal((await stack.client.result(id)).status, 'completed');

  const mine = received.filter((r) => r.body.sessionId === id);
  assert.ok(mine.every((r) => r.signed), 'every POST carries a valid signature');
  const first = mine.filter((r) => r.delivery === mine[0]!.delivery);
  assert.deepEqual(first.map((r) => r.status), [503, 503, 200], 'the first delivery was retried twice, same id');
  // Deliveries run side by side (a retried one arrives late): the delivery id's seq gives their order.
  const seqOf = (r: Received) => Number(r.delivery.split('/').at(-1));
  const accepted = mine.filter((r) => r.status === 200).sort((a, b) => seqOf(a) - seqOf(b));
  assert.deepEqual(accepted.map((r) => r.event), ['session.waiting', 'session.waiting', 'session.ended']);
  assert.equal(accepted[0]!.body.data.reason, 'waiting for a message');
  assert.equal(accepted[2]!.body.data.status, 'completed');
  assert.equal(new Set(accepted.map((r) => r.delivery)).size, 3, 'each delivery has its own id');

  const recorded = webhookEvents(await getEvents(stack.sql, id));
  assert.deepEqual(recorded.map((e) => e.type), ['webhook.delivered', 'webhook.delivered', 'webhook.delivered']);
  const d0 = recorded.map((e) => e.data as { attempt: number; id: string; status: number }).find((d) => d.id === accepted[0]!.delivery)!;
  assert.equal(d0.attempt, 3);
  assert.equal(d0.id, accepted[0]!.delivery);
  assert.equal(d0.status, 200);
  // The secret is the workers' alone: not in the spec, the events or the history.
  const history = JSON.stringify(await stack.client.temporal.workflow.getHandle(id).fetchHistory());
  assert.ok(!history.includes(SECRET) && !JSON.stringify(await getEvents(stack.sql, id)).includes(SECRET));
  await recordHistory(stack.client.temporal, id, 'webhook-session.json');
});

test("a tenant's webhook hears of a spent budget; a 400 is recorded as failed, not retried, and the session goes on", { timeout: 120_000 }, async () => {
  const tenant = uniqueId('hook-tenant');
  const path = `/${tenant}`;
  const owner = connect(testOwnerUrl());
  await setTenantLimits(owner, { tenant, webhookUrl: `${base}${path}` });
  await owner.end({ timeout: 2 });
  plans.set(path, { statuses: [400] });
  const id = uniqueId('hook-budget');
  await stack.client.start(
    {
      task: 'two commands',
      tenant,
      budgets: { toolCalls: 1 },
      model: { provider: 'scripted', model: 'hooks', script: [{ toolCalls: [{ name: 'shell', input: { command: 'echo 1' } }] }, { toolCalls: [{ name: 'shell', input: { command: 'echo 2' } }] }, { text: 'done' }] },
    },
    { sessionId: id },
  );
  for (let i = 0; i < 200 && (await stack.client.status(id)).status !== 'budget_exhausted'; i++) await new Promise((r) => setTimeout(r, 100));
  await stack.client.cancel(id, 'enough');
  await stack.client.result(id).catch(() => undefined);

  const mine = received.filter((r) => r.body.sessionId === id);
  assert.deepEqual(mine.map((r) => [r.event, r.status]), [['session.budget_exhausted', 400], ['session.ended', 200]]);
  const recorded = webhookEvents(await getEvents(stack.sql, id));
  assert.deepEqual(recorded.map((e) => e.type), ['webhook.failed', 'webhook.delivered']);
  assert.match((recorded[0]!.data as { error: string }).error, /Webhook\.Rejected: webhook .* answered 400 on attempt 1/);
});

test('a webhook that is not an http(s) URL is refused before the session starts', async () => {
  await assert.rejects(stack.client.start({ task: 't', webhook: { url: 'file:///etc/passwd' }, model: { provider: 'scripted', model: 'x', script: [{ text: 'x' }] } }), /webhook\.url must be http or https, not file/);
  await assert.rejects(stack.client.start({ task: 't', webhook: { url: 'https://a.example', events: ['session.started' as never] }, model: { provider: 'scripted', model: 'x', script: [{ text: 'x' }] } }), /webhook\.events: "session\.started" is not one of/);
});
