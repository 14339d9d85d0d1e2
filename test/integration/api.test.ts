/**
 * The HTTP API (`keel serve`) on real Temporal, Docker and Postgres: every route, API keys and
 * tenants (another tenant's session is a 404 on every route, table-driven and checked against
 * the OpenAPI document so no route is left out), bad input named by field, and the live stream:
 * a client that drops and reconnects with Last-Event-ID gets exactly the events it missed, then
 * live ones, and nothing twice.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import type { ScriptTurn } from '../../common/types';
import { connect, getEvents, revokeApiKey } from '../../store';
import { startApi, type TestApi } from '../helpers/api';
import { ensureSandboxImage, testOwnerUrl, uniqueId } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { openSse } from '../helpers/sse';
import { startStack, type Stack } from '../helpers/stack';

let stack: Stack;
let api: TestApi;
let tenantA: string;
let tenantB: string;
let keyA: string;
let keyB: string;
const docker = new Docker();

before(async () => {
  await ensureSandboxImage(docker);
  stack = await startStack('api-host');
  api = await startApi(stack);
  tenantA = uniqueId('tenant-a');
  tenantB = uniqueId('tenant-b');
  keyA = await api.key(tenantA);
  keyB = await api.key(tenantB);
});

after(async () => {
  await api?.stop();
  await stack?.stop();
});

const shell = (command: string): ScriptTurn => ({ toolCalls: [{ name: 'shell', input: { command } }] });
const scripted = (script: ScriptTurn[]) => ({ provider: 'scripted' as const, model: 'api-test', script });
const seqsOf = async (id: string) => (await getEvents(stack.sql, id)).map((e) => e.seq);

/** Start a session as tenant A through the API; returns its id. */
async function startA(body: Record<string, unknown>): Promise<string> {
  const id = uniqueId('api');
  const res = await api.call(keyA, 'POST', '/sessions', { id, ...body });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.equal(res.body.sessionId, id);
  return id;
}

async function waitIdle(id: string): Promise<void> {
  const r = await stack.client.untilIdle(id, { pollMs: 100 });
  assert.ok(r.idle, `session ${id} ended instead of waiting: ${JSON.stringify(!r.idle && r.result)}`);
}

describe('keys', () => {
  test('/openapi.json is public and generated from the schemas; every other route needs a valid, unrevoked key', async () => {
    const doc = await api.call(undefined, 'GET', '/openapi.json');
    assert.equal(doc.status, 200);
    assert.equal(doc.body.openapi, '3.0.3');
    const start = doc.body.paths['/sessions'].post.requestBody.content['application/json'].schema;
    assert.deepEqual(start.required.sort(), ['model', 'task']);
    assert.deepEqual(start.properties.model.properties.provider.enum, ['scripted', 'anthropic', 'openai', 'openai-compatible']);
    assert.deepEqual(start.properties.workspace.required.sort(), ['bytes', 'files', 'snapshot'], 'a seed is named by its snapshot');

    const none = await api.call(undefined, 'GET', '/sessions');
    assert.equal(none.status, 401);
    assert.equal(none.body.code, 'unauthorized');
    assert.match(none.body.message, /Authorization: Bearer/);
    const forged = keyA.slice(0, -4) + (keyA.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    assert.equal((await api.call(forged, 'GET', '/sessions')).status, 401);
    assert.equal((await api.call('not-a-key', 'GET', '/sessions')).status, 401);

    const doomed = await api.key(tenantA);
    assert.equal((await api.call(doomed, 'GET', '/sessions')).status, 200);
    const owner = connect(testOwnerUrl());
    try {
      assert.equal(await revokeApiKey(owner, /^keel_([0-9a-f]{12})_/.exec(doomed)![1]!), true);
    } finally {
      await owner.end({ timeout: 2 });
    }
    const revoked = await api.call(doomed, 'GET', '/sessions');
    assert.equal(revoked.status, 401);
    assert.match(revoked.body.message, /not valid/);
  });

  test('keys are stored only as hashes, and the API role may read them but not make them', async () => {
    const rows = await stack.sql<{ id: string; secret_sha256: Buffer }[]>`select id, secret_sha256 from api_keys where tenant = ${tenantA}`;
    assert.ok(rows.length >= 1);
    for (const r of rows) {
      assert.equal(r.secret_sha256.length, 32);
      assert.ok(!keyA.includes(r.secret_sha256.toString('base64url')));
    }
    await assert.rejects(stack.sql`insert into api_keys (id, tenant, secret_sha256) values ('x', ${tenantA}, '\\x00')`, /permission denied/);
  });
});

describe('bad input is a 400 that names the field', () => {
  const model = scripted([{ text: 'hi' }]);
  const cases: Array<[string, string, string, unknown, RegExp, Record<string, string>?]> = [
    ['no task', 'POST', '/sessions', { model }, /body\.task/],
    ['unknown provider', 'POST', '/sessions', { task: 't', model: { provider: 'gpt', model: 'x' } }, /body\.model\.provider/],
    ['a field that does not exist', 'POST', '/sessions', { task: 't', model, maxStep: 3 }, /body: Unrecognized key: "maxStep"/],
    ['a tenant other than the key\'s', 'POST', '/sessions', { task: 't', model, tenant: 'other' }, /Unrecognized key: "tenant"/],
    ['a step limit of 0', 'POST', '/sessions', { task: 't', model, maxSteps: 0 }, /body\.maxSteps/],
    ['a bad policy action', 'POST', '/sessions', { task: 't', model, policy: { rules: [{ tool: 'shell', action: 'maybe' }] } }, /body\.policy\.rules\.0\.action/],
    ['an empty script (validateSpec)', 'POST', '/sessions', { task: 't', model: scripted([]) }, /a scripted model needs a script/],
    ['a policy naming no tool (validateSpec)', 'POST', '/sessions', { task: 't', model, policy: { rules: [{ tool: 'nosuch', action: 'deny' }] } }, /nosuch/],
    ['not JSON', 'POST', '/sessions', '{', /JSON|body/],
    ['a negative event seq', 'GET', '/sessions/x/events?after=-1', undefined, /querystring\.after/],
    ['a Last-Event-ID that is no seq', 'GET', '/sessions/x/stream', undefined, /headers\.last-event-id/, { 'last-event-id': 'abc' }],
    ['a denial without a reason', 'POST', '/sessions/x/approvals/c/deny', {}, /body\.reason/],
    ['an empty message', 'POST', '/sessions/x/messages', { text: '' }, /body\.text/],
    ['a budget that is not one', 'POST', '/sessions/x/budget', { add: { dollars: 1 } }, /body\.add: Unrecognized key: "dollars"/],
    ['a fork without a step', 'POST', '/sessions/x/fork', {}, /body\.atStep/],
  ];
  for (const [name, method, path, body, message, headers] of cases) {
    test(name, async () => {
      const raw = typeof body === 'string';
      const res = raw
        ? await fetch(`${api.url}${path}`, { method, headers: { authorization: `Bearer ${keyA}`, 'content-type': 'application/json' }, body }).then(async (r) => ({ status: r.status, body: (await r.json()) as { code: string; message: string } }))
        : await api.call(keyA, method, path, body, headers);
      assert.equal(res.status, 400, JSON.stringify(res.body));
      assert.equal(res.body.code, 'invalid_request');
      assert.match(res.body.message, message);
    });
  }

  test('a session id used twice is a 409', async () => {
    const id = await startA({ task: 'once', model });
    const again = await api.call(keyA, 'POST', '/sessions', { id, task: 'twice', model });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'conflict');
    assert.equal((await stack.client.result(id)).status, 'completed');
  });
});

describe('a session driven over HTTP', () => {
  let mainId: string;

  test('start, approve, deny, message, close; the stream resumes after Last-Event-ID with exactly the missed events', async () => {
    mainId = await startA({
      task: 'work over HTTP',
      model: scripted([
        shell('echo needs-ok > /workspace/a.txt; echo ran'),
        shell('echo needs-ok again'),
        { text: 'waiting for you' },
        shell('cat /workspace/a.txt'),
        { text: 'done' },
      ]),
      keepAlive: true,
      policy: { rules: [{ tool: 'shell', command: 'needs-ok', action: 'ask', reason: 'a person decides' }] },
    });
    const id = mainId;
    const first: Array<{ id: number; type: string }> = [];
    const stream1 = await openSse(`${api.url}/sessions/${id}/stream`, { authorization: `Bearer ${keyA}` }, (m) => {
      if (m.id) first.push({ id: Number(m.id), type: (JSON.parse(m.data) as { type: string }).type });
    });
    assert.equal(stream1.status, 200);
    // Drop the connection while the first call waits; the session goes on without the client.
    const deadline = Date.now() + 60_000;
    while (!first.some((e) => e.type === 'approval.requested')) {
      assert.ok(Date.now() < deadline, 'no approval.requested on the stream');
      await new Promise((r) => setTimeout(r, 50));
    }
    stream1.abort();
    await stream1.closed;
    const lastId = first.at(-1)!.id;

    const detail = await api.call(keyA, 'GET', `/sessions/${id}`);
    assert.equal(detail.status, 200);
    assert.equal(detail.body.session.tenant, tenantA);
    assert.deepEqual(detail.body.pending.map((p: { callId: string }) => p.callId), ['call_0_0']);
    const approved = await api.call(keyA, 'POST', `/sessions/${id}/approvals/call_0_0/approve`, { by: 'alice' });
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    const twice = await api.call(keyA, 'POST', `/sessions/${id}/approvals/call_0_0/approve`, {});
    assert.equal(twice.status, 409);
    assert.match(twice.body.message, /already answered/);
    await waitForEvent(stack.sql, id, (e) => e.type === 'approval.requested' && e.data.callId === 'call_1_0');

    const second: Array<{ id: number; type: string; seq: number }> = [];
    let ended = false;
    const stream2 = await openSse(`${api.url}/sessions/${id}/stream`, { authorization: `Bearer ${keyA}`, 'last-event-id': String(lastId) }, (m) => {
      if (m.event === 'end') ended = true;
      else if (m.id) {
        const body = JSON.parse(m.data) as { type: string; seq: number };
        second.push({ id: Number(m.id), type: body.type, seq: body.seq });
      }
    });
    assert.equal(stream2.status, 200);
    const denied = await api.call(keyA, 'POST', `/sessions/${id}/approvals/call_1_0/deny`, { reason: 'not that one' });
    assert.equal(denied.status, 200, JSON.stringify(denied.body));
    await waitIdle(id);
    assert.equal((await api.call(keyA, 'POST', `/sessions/${id}/messages`, { text: 'go on' })).status, 202);
    await waitForEvent(stack.sql, id, (e) => e.type === 'model.call' && e.data.text === 'done');
    await waitIdle(id);
    assert.equal((await api.call(keyA, 'POST', `/sessions/${id}/close`)).status, 202);
    await stream2.closed;

    assert.ok(ended, 'the stream ends with event: end after session.ended');
    const all = await seqsOf(id);
    assert.equal(second[0]?.id, lastId + 1, 'the resumed stream starts right after Last-Event-ID');
    assert.deepEqual([...first.map((e) => e.id), ...second.map((e) => e.id)], all.slice(0, first.length + second.length), 'every event once, in order');
    assert.equal(second.at(-1)?.type, 'session.ended');
    assert.ok(second.every((e) => e.id === e.seq));
    assert.ok(second.some((e) => e.type === 'message.user'), 'live events after the resume are delivered');

    const result = await stack.client.result(id);
    assert.equal(result.status, 'completed');
    const events = await getEvents(stack.sql, id);
    const decided = events.filter((e) => e.type === 'approval.decided').map((e) => e.type === 'approval.decided' && [e.data.callId, e.data.decision, e.data.by]);
    assert.deepEqual(decided, [['call_0_0', 'approve', 'alice'], ['call_1_0', 'deny', `apikey:${/^keel_([0-9a-f]{12})_/.exec(keyA)![1]}`]]);
    const cat = events.filter((e) => e.type === 'tool.result').map((e) => e.type === 'tool.result' && e.data.output.trim());
    assert.equal(cat.at(-1), 'needs-ok');
  });

  test('an ended session streams what is left and ends; list, show and events read it', async () => {
    const id = mainId;
    const all = await seqsOf(id);
    const tail: number[] = [];
    let ended = false;
    const s = await openSse(`${api.url}/sessions/${id}/stream`, { authorization: `Bearer ${keyA}`, 'last-event-id': String(all.at(-3)) }, (m) => {
      if (m.event === 'end') ended = true;
      else if (m.id) tail.push(Number(m.id));
    });
    await s.closed;
    assert.ok(ended);
    assert.deepEqual(tail, all.slice(-2));
    const fromEnd = await openSse(`${api.url}/sessions/${id}/stream?after=${all.at(-1)}`, { authorization: `Bearer ${keyA}` }, () => undefined);
    await fromEnd.closed;

    const list = await api.call(keyA, 'GET', '/sessions?limit=50');
    assert.equal(list.status, 200);
    assert.ok(list.body.some((s: { id: string; status: string }) => s.id === id && s.status === 'completed'));
    // Totals from the events: 3 tool results, every model call's tokens; a scripted model has no price.
    const row = list.body.find((s: { id: string }) => s.id === id);
    const rowEvents = await getEvents(stack.sql, id);
    const calls = rowEvents.filter((e) => e.type === 'model.call');
    assert.deepEqual(
      { steps: row.steps, inputTokens: row.inputTokens, outputTokens: row.outputTokens, usd: row.usd },
      {
        steps: 3,
        inputTokens: calls.reduce((n, e) => n + (e.type === 'model.call' ? e.data.usage.inputTokens : 0), 0),
        outputTokens: calls.reduce((n, e) => n + (e.type === 'model.call' ? e.data.usage.outputTokens : 0), 0),
        usd: null,
      },
    );
    assert.ok(row.inputTokens > 0);
    assert.ok(list.body.every((s: { tenant: string }) => s.tenant === tenantA));
    const events = await api.call(keyA, 'GET', `/sessions/${id}/events?after=2&limit=3`);
    assert.deepEqual(events.body.map((e: { seq: number }) => e.seq), all.slice(2, 5));
    const detail = await api.call(keyA, 'GET', `/sessions/${id}`);
    assert.deepEqual(detail.body.steps.map((s: { tool: string; ok: boolean }) => [s.tool, s.ok]), [['shell', true], ['shell', false], ['shell', true]]);
    // The step diff is `keel diff --json`: step 1 wrote a.txt, step 3 (cat) changed nothing.
    const diff1 = await api.call(keyA, 'GET', `/sessions/${id}/steps/1/diff`);
    assert.equal(diff1.status, 200, JSON.stringify(diff1.body));
    assert.ok(diff1.body.added.some((e: { path: string }) => e.path === '/workspace/a.txt'));
    assert.match(diff1.body.textDiffs['/workspace/a.txt'], /\+needs-ok/);
    const diff3 = await api.call(keyA, 'GET', `/sessions/${id}/steps/3/diff`);
    assert.deepEqual([diff3.body.added, diff3.body.modified, diff3.body.removed, diff3.body.after], [[], [], [], undefined]);
    assert.equal((await api.call(keyA, 'GET', `/sessions/${id}/steps/0/diff`)).status, 400);
  });

  test('audit verify and replay', async () => {
    const verify = await api.call(keyA, 'GET', `/sessions/${mainId}/audit/verify`);
    assert.equal(verify.status, 200, JSON.stringify(verify.body));
    assert.equal(verify.body.ok, true, JSON.stringify(verify.body.problems));
    assert.ok(verify.body.anchors > 0);
    const replay = await api.call(keyA, 'POST', `/sessions/${mainId}/audit/replay`);
    assert.equal(replay.status, 200, JSON.stringify(replay.body));
    assert.equal(replay.body.ok, true, replay.body.failure?.message);
  });

  test('fork: a new session of the same tenant from step 1', async () => {
    const forkId = uniqueId('api-fork');
    const res = await api.call(keyA, 'POST', `/sessions/${mainId}/fork`, { atStep: 1, id: forkId, model: scripted([shell('cat /workspace/a.txt'), { text: 'forked' }]) });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const result = await stack.client.result(forkId);
    assert.equal(result.status, 'completed', result.error);
    assert.equal(result.summary, 'forked');
    const out = (await getEvents(stack.sql, forkId)).filter((e) => e.type === 'tool.result' && !e.data.copiedFrom);
    assert.equal(out[0]?.type === 'tool.result' && out[0].data.output.trim(), 'needs-ok', 'the fork has the files of step 1');
    assert.equal((await api.call(keyA, 'GET', `/sessions/${forkId}`)).body.session.tenant, tenantA);
    assert.equal((await api.call(keyB, 'GET', `/sessions/${forkId}`)).status, 404);
    const beyond = await api.call(keyA, 'POST', `/sessions/${mainId}/fork`, { atStep: 99 });
    assert.equal(beyond.status, 400);
    assert.match(beyond.body.message, /has \d+ steps/);
  });

  test('budget: a session stopped at its tool-call budget resumes when budget is added', async () => {
    const id = await startA({ task: 'budget', model: scripted([shell('echo 1'), shell('echo 2'), { text: 'done' }]), budgets: { toolCalls: 1 } });
    await waitForEvent(stack.sql, id, (e) => e.type === 'budget.exhausted');
    const res = await api.call(keyA, 'POST', `/sessions/${id}/budget`, { add: { toolCalls: 5 }, by: 'ops' });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal((await stack.client.result(id)).status, 'completed');
    const added = (await getEvents(stack.sql, id)).find((e) => e.type === 'budget.added');
    assert.deepEqual(added?.type === 'budget.added' && added.data, { add: { toolCalls: 5 }, by: 'ops' });
  });

  test('cancel stops a running command', async () => {
    const id = await startA({ task: 'cancel', model: scripted([shell('sleep 60'), { text: 'never' }]) });
    await waitForEvent(stack.sql, id, (e) => e.type === 'tool.call');
    const res = await api.call(keyA, 'POST', `/sessions/${id}/cancel`, { reason: 'enough' });
    assert.equal(res.status, 202);
    const result = await stack.client.result(id);
    assert.equal(result.status, 'cancelled');
    const again = await api.call(keyA, 'POST', `/sessions/${id}/messages`, { text: 'too late' });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'ended');
  });
});

describe("another tenant's session is a 404 on every route", () => {
  // Every route that names a session, with a body it would accept.
  const routes: Array<[method: string, path: string, body?: unknown]> = [
    ['GET', '/sessions/{id}'],
    ['GET', '/sessions/{id}/events'],
    ['GET', '/sessions/{id}/steps/{step}/diff'],
    ['GET', '/sessions/{id}/stream'],
    ['POST', '/sessions/{id}/messages', { text: 'from tenant b' }],
    ['POST', '/sessions/{id}/cancel', { reason: 'tenant b' }],
    ['POST', '/sessions/{id}/close'],
    ['POST', '/sessions/{id}/approvals/{callId}/approve', {}],
    ['POST', '/sessions/{id}/approvals/{callId}/deny', { reason: 'tenant b' }],
    ['POST', '/sessions/{id}/budget', { add: { toolCalls: 1 } }],
    ['POST', '/sessions/{id}/fork', { atStep: 1 }],
    ['GET', '/sessions/{id}/audit/verify'],
    ['POST', '/sessions/{id}/audit/replay'],
  ];

  test('the table covers every route of the OpenAPI document', async () => {
    const doc = await api.call(undefined, 'GET', '/openapi.json');
    const documented = Object.entries(doc.body.paths as Record<string, Record<string, unknown>>)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
      .filter((r) => r.includes('{id}'))
      .sort();
    assert.deepEqual(routes.map(([m, p]) => `${m} ${p}`).sort(), documented);
  });

  test('a live session of tenant A, tried with tenant B\'s key: 404 like a session that does not exist, and nothing changes', async () => {
    const id = await startA({
      task: 'isolation',
      model: scripted([shell('echo needs-ok'), { text: 'waiting' }, { text: 'closed' }]),
      keepAlive: true,
      policy: { rules: [{ tool: 'shell', command: 'needs-ok', action: 'ask' }] },
    });
    await waitForEvent(stack.sql, id, (e) => e.type === 'approval.requested');
    const before = await seqsOf(id);
    const missing = uniqueId('no-such-session');
    for (const [method, template, body] of routes) {
      const path = (sid: string) => template.replace('{id}', sid).replace('{callId}', 'call_0_0').replace('{step}', '1');
      const theirs = await api.call(keyB, method, path(id), body);
      const none = await api.call(keyB, method, path(missing), body);
      assert.equal(theirs.status, 404, `${method} ${template}: ${JSON.stringify(theirs.body)}`);
      assert.deepEqual(theirs.body, { code: 'not_found', message: `no session ${id}` }, `${method} ${template}`);
      assert.deepEqual({ ...none.body, message: none.body.message.replace(missing, id) }, theirs.body, `${method} ${template} tells nothing a missing session would not`);
      // Tenant A's own key reaches it (the route exists and the 404 was about the tenant).
      if (method === 'GET' && !template.endsWith('/stream')) assert.equal((await api.call(keyA, method, path(id))).status, 200, `${method} ${template} as tenant A`);
    }
    const list = await api.call(keyB, 'GET', '/sessions?limit=500');
    assert.ok(!list.body.some((s: { id: string }) => s.id === id));

    // Nothing tenant B sent reached the session: same events, still waiting for the same call.
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(await seqsOf(id), before);
    const state = await stack.client.status(id);
    assert.equal(state.waitingFor, 'approval');
    assert.equal((await api.call(keyA, 'POST', `/sessions/${id}/approvals/call_0_0/approve`, {})).status, 200);
    await waitIdle(id);
    assert.equal((await api.call(keyA, 'POST', `/sessions/${id}/close`)).status, 202);
    assert.equal((await stack.client.result(id)).status, 'completed');
  });

  test('a session too new to be in Postgres is found by its tenant (the start memo), and only by it', async () => {
    const id = uniqueId('api-starting');
    // Nobody polls this queue: the session never records an event.
    const handle = await stack.client.temporal.workflow.start('agentSession', {
      workflowId: id,
      taskQueue: uniqueId('nobody-polls'),
      args: [{ task: 'never runs', model: scripted([{ text: 'x' }]), tenant: tenantA }],
      memo: { tenant: tenantA },
    });
    try {
      const mine = await api.call(keyA, 'GET', `/sessions/${id}`);
      assert.equal(mine.status, 200, JSON.stringify(mine.body));
      assert.equal(mine.body.session.status, 'starting');
      assert.equal((await api.call(keyB, 'GET', `/sessions/${id}`)).status, 404);
      assert.equal((await api.call(keyB, 'POST', `/sessions/${id}/cancel`, {})).status, 404);
    } finally {
      await handle.terminate('test over');
    }
  });
});

describe('shutdown', () => {
  test('closing the server hangs up open streams without `end`, so clients reconnect elsewhere', { timeout: 30_000 }, async () => {
    const id = await startA({ task: 'shutdown', model: scripted([{ text: 'waiting' }, { text: 'closed' }]), keepAlive: true });
    await waitIdle(id);
    const other = await startApi(stack);
    const key = await other.key(tenantA);
    let ended = false;
    const seen: number[] = [];
    const s = await openSse(`${other.url}/sessions/${id}/stream`, { authorization: `Bearer ${key}` }, (m) => {
      if (m.event === 'end') ended = true;
      else if (m.id) seen.push(Number(m.id));
    });
    assert.equal(s.status, 200);
    const deadline = Date.now() + 10_000;
    while (seen.length === 0) {
      assert.ok(Date.now() < deadline, 'no event on the stream');
      await new Promise((r) => setTimeout(r, 20));
    }
    const t0 = Date.now();
    await other.stop();
    await s.closed;
    assert.ok(Date.now() - t0 < 5000, `the server took ${Date.now() - t0} ms to close`);
    assert.equal(ended, false);
    assert.equal((await api.call(keyA, 'POST', `/sessions/${id}/close`)).status, 202);
    assert.equal((await stack.client.result(id)).status, 'completed');
  });
});
