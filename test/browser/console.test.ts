/**
 * The web console (`/console/` of `keel serve`) in headless Chromium, driven by playwright-core,
 * on real Temporal, Docker and Postgres: log in with a key, start a session from the page and
 * watch it end live (no reload), open a step's file diff, cut a kept-alive session's stream
 * (the page reconnects with Last-Event-ID), steer it with a message, approve one waiting call and
 * deny another, close it, cancel another. Hostile output (HTML in a
 * command's output and in model text) must show as text and never run. Screenshots of each
 * page go to test-results/console/ (git-ignored).
 *
 * Needs Chromium at /usr/bin/chromium (scripts/setup.sh installs Debian's) or KEEL_CHROMIUM.
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Docker from 'dockerode';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { ScriptTurn } from '../../common/types';
import { getEvents } from '../../store';
import { startApi, type TestApi } from '../helpers/api';
import { ensureSandboxImage, uniqueId } from '../helpers/env';
import { waitForEvent } from '../helpers/events';
import { FakeLlmServer } from '../helpers/fake-llm-server';
import { startStack, type Stack } from '../helpers/stack';

const SHOTS = path.join(__dirname, '..', '..', 'test-results', 'console');
const CHROMIUM = process.env.KEEL_CHROMIUM ?? '/usr/bin/chromium';

let stack: Stack;
let api: TestApi;
let browser: Browser;
let page: Page;
let tenant: string;
let key: string;
let otherId: string;
/** The browser reaches the API through this TCP proxy, so a test can cut its connections. */
let proxy: { url: string; dropAll(): number; close(): Promise<void> };
const docker = new Docker();

const shell = (command: string): ScriptTurn => ({ toolCalls: [{ name: 'shell', input: { command } }] });
const scripted = (script: ScriptTurn[]) => ({ provider: 'scripted' as const, model: 'console-test', script });
/** A TCP proxy to `target` whose open connections can be cut, as a network drop would. */
async function tcpProxy(target: string): Promise<typeof proxy> {
  const { hostname, port } = new URL(target);
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      open.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => (open.delete(a), b.destroy()));
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const dropAll = () => {
    const n = open.size;
    for (const s of open) s.destroy();
    return n;
  };
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    dropAll,
    close: () => new Promise<void>((r) => (dropAll(), server.close(() => r()))),
  };
}

const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  await ensureSandboxImage(docker);
  stack = await startStack('console-host');
  api = await startApi(stack);
  tenant = uniqueId('console-t');
  key = await api.key(tenant);
  // Another tenant's session, which the console must never show.
  const otherKey = await api.key(uniqueId('console-other'));
  otherId = uniqueId('console-other-s');
  const other = await api.call(otherKey, 'POST', '/sessions', { id: otherId, task: 'not yours', model: scripted([{ text: 'hi' }]) });
  assert.equal(other.status, 201, JSON.stringify(other.body));
  proxy = await tcpProxy(api.url);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(90_000);
  page.on('pageerror', (err) => assert.fail(`error in the page: ${err.message}`));
});

after(async () => {
  await browser?.close();
  await proxy?.close();
  await api?.stop();
  await stack?.stop();
});

/** Put `spec` into the start form and submit it; returns once the session page shows it. */
async function startFromPage(spec: Record<string, unknown>): Promise<void> {
  await page.goto(`${proxy.url}/console/#/`);
  await page.locator('#spec').fill(JSON.stringify(spec, null, 2));
  await page.getByRole('button', { name: 'Start session' }).click();
  await page.waitForURL((u) => u.hash === `#/sessions/${encodeURIComponent(spec.id as string)}`);
  await page.locator('#timeline li').first().waitFor();
}

/** The seqs the timeline shows, in page order. */
const timelineSeqs = () => page.locator('#timeline li').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-seq'))));

describe('the web console', () => {
  let firstId: string;

  test('the page is public, strict about what it loads, and asks for a key; a bad key is refused', async () => {
    const res = await fetch(`${api.url}/console/`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'/);
    assert.equal((await fetch(`${api.url}/console/app.js`)).headers.get('content-type'), 'text/javascript; charset=utf-8');

    await page.goto(`${proxy.url}/console/`);
    await page.locator('#key').fill('keel_000000000000_nope');
    await page.getByRole('button', { name: 'Open' }).click();
    await page.getByRole('alert').filter({ hasText: 'not valid' }).waitFor();
    await shot('1-login');
    await page.locator('#key').fill(key);
    await page.getByRole('button', { name: 'Open' }).click();
    await page.locator('#sessions').waitFor();
    assert.equal(await page.evaluate("sessionStorage.getItem('keel.apiKey')"), key);
  });

  test('a session started from the page is watched live to its end; its output is text, never HTML', async () => {
    firstId = uniqueId('console-s');
    await startFromPage({
      id: firstId,
      task: 'write <i>hello</i>',
      model: scripted([
        shell(`sleep 2; printf 'hello <b>world</b>\\n' > /workspace/hello.txt; echo '<img src=x onerror="window.__xss=1">'`),
        shell(`printf 'hello <b>there</b>\\n' > /workspace/hello.txt`),
        { text: 'done <script>window.__xss=2</script>' },
      ]),
      maxSteps: 5,
    });
    // Set after the page opened: still there at the end, so the events came without a reload.
    await page.evaluate('window.__same = 1');
    assert.equal(await page.locator('#timeline li[data-type="session.ended"]').count(), 0, 'the page opened before the end');
    await page.locator('#timeline li[data-type="session.ended"]').waitFor();
    await page.locator('#stream-state[data-ended="true"]').waitFor();
    await page.locator('h1 [data-status="completed"]').waitFor();
    assert.equal(await page.evaluate('window.__same'), 1, 'no reload');

    const events = await getEvents(stack.sql, firstId);
    assert.deepEqual(await timelineSeqs(), events.map((e) => e.seq), 'every event once, in order');
    assert.equal(await page.evaluate('window.__xss'), undefined, 'nothing from the output ran');
    assert.equal(await page.locator('#timeline img, #timeline script, #timeline b').count(), 0, 'no element came from the output');
    assert.equal((await page.locator('#timeline .tool-output').first().textContent())?.trim(), '<img src=x onerror="window.__xss=1">');
    assert.match((await page.locator('#timeline .model-text').last().textContent()) ?? '', /done <script>/);
    await shot('2-session-ended');
  });

  test("a step's files: the diff keel diff computes", async () => {
    await page.locator('.show-diff[data-step="1"]').click();
    await page.locator('#diff pre.diff').waitFor();
    let text = (await page.locator('#diff').textContent()) ?? '';
    assert.match(text, /Files step 1 changed/);
    assert.match(text, /A \/workspace\/hello\.txt \(19 B\)/);

    await page.locator('.show-diff[data-step="2"]').click();
    await page.locator('#diff h2', { hasText: 'step 2' }).waitFor();
    await page.locator('#diff pre.diff').waitFor();
    text = (await page.locator('#diff').textContent()) ?? '';
    assert.match(text, /0 added, 1 modified, 0 removed/);
    assert.match(text, /M \/workspace\/hello\.txt/);
    assert.equal(await page.locator('#diff pre.diff .del').allTextContents().then((t) => t.map((l) => l.trim())).then((t) => t.filter((l) => l === '-hello <b>world</b>').length), 1);
    assert.equal(await page.locator('#diff pre.diff .add').allTextContents().then((t) => t.map((l) => l.trim())).then((t) => t.filter((l) => l === '+hello <b>there</b>').length), 1);
    assert.equal(await page.locator('#diff b').count(), 0);
    await shot('3-step-diff');
  });

  test("the list shows the tenant's sessions with steps, tokens, cost and age, and no one else's", async () => {
    await page.goto(`${proxy.url}/console/#/`);
    const row = page.locator(`#sessions tr[data-session="${firstId}"]`);
    await row.waitFor();
    const cells = await row.locator('td').allTextContents();
    assert.equal(cells[1], 'completed');
    assert.equal(cells[2], tenant);
    assert.equal(cells[3], '2');
    assert.match(cells[4]!, /^[\d,]+ \/ [\d,]+$/);
    assert.equal(cells[5], '–', 'a scripted model has no price');
    assert.equal(cells[7], 'write <i>hello</i>');
    assert.equal(await page.locator(`#sessions tr[data-session="${otherId}"]`).count(), 0);
    assert.equal(await page.locator('#sessions i').count(), 0);
    await shot('4-sessions');
  });

  test('a kept-alive session: a message from the page, one call approved and one denied from the page, then closed', async () => {
    const id = uniqueId('console-k');
    await startFromPage({
      id,
      task: 'wait, then ask',
      model: scripted([{ text: 'waiting for you' }, shell('echo needs-ok > /workspace/b.txt; echo ran'), shell('echo needs-ok; rm -rf /workspace'), { text: 'done' }]),
      keepAlive: true,
      policy: { rules: [{ tool: 'shell', command: 'needs-ok', action: 'ask', reason: 'a person decides' }] },
    });
    await page.locator('h1 [data-status="waiting"]').waitFor();
    // The network drops while the session waits: the page reconnects (Last-Event-ID) by itself.
    await page.locator('#stream-state[data-connects="1"]').waitFor();
    assert.ok(proxy.dropAll() > 0);
    await page.locator('#stream-state[data-connects="2"]').waitFor();
    await page.locator('#message-text').fill('please go on');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.locator('#timeline li[data-type="message.user"]').waitFor();

    const call = page.locator('#pending [data-call="call_1_0"]');
    await call.waitFor();
    assert.match((await call.textContent()) ?? '', /needs-ok/);
    assert.match((await call.textContent()) ?? '', /a person decides/);
    await shot('5-waiting-for-approval');
    await call.getByRole('button', { name: 'Approve' }).click();
    await page.locator('#timeline li[data-type="approval.decided"]').waitFor();

    // The next call: a denial needs a reason, which the model is given.
    const next = page.locator('#pending [data-call="call_2_0"]');
    await next.waitFor();
    await next.getByRole('button', { name: 'Deny' }).click();
    await next.getByRole('alert').filter({ hasText: 'say why' }).waitFor();
    await next.locator('input[name="reason"]').fill('not the whole workspace');
    await next.getByRole('button', { name: 'Deny' }).click();
    await page.locator('#timeline .model-text', { hasText: 'done' }).waitFor();
    await page.locator('#pending').waitFor({ state: 'hidden' });
    await page.locator('h1 [data-status="waiting"]').waitFor();
    await shot('6-approved');

    const events = await getEvents(stack.sql, id);
    const message = events.find((e) => e.type === 'message.user');
    assert.equal(message?.type === 'message.user' && message.data.text, 'please go on');
    const keyId = /^keel_([0-9a-f]{12})_/.exec(key)![1];
    const decided = events.flatMap((e) => (e.type === 'approval.decided' ? [[e.data.callId, e.data.decision, e.data.by, e.data.reason]] : []));
    assert.deepEqual(decided, [
      ['call_1_0', 'approve', `apikey:${keyId}`, undefined],
      ['call_2_0', 'deny', `apikey:${keyId}`, 'not the whole workspace'],
    ]);
    const results = events.flatMap((e) => (e.type === 'tool.result' ? [[e.data.ok, e.data.output.trim()]] : []));
    assert.equal(results[0]?.[1], 'ran');
    assert.equal(results[1]?.[0], false, 'the denied call did not run');
    assert.equal(await page.locator('#timeline li[data-type="approval.decided"]').count(), 2);

    await page.getByRole('button', { name: /^Close/ }).click();
    await page.locator('#timeline li[data-type="session.ended"]').waitFor();
    assert.deepEqual(await timelineSeqs(), (await getEvents(stack.sql, id)).map((e) => e.seq), 'after the reconnect: every event once, in order');
    assert.equal((await stack.client.result(id)).status, 'completed');
  });

  test('model text streams into the timeline while the call runs, and the model turn replaces it', async () => {
    const llm = await FakeLlmServer.start();
    try {
      let start!: () => void;
      let finish!: () => void;
      const chunks = ['Thinking ', 'out ', 'loud, ', 'live.'];
      llm.enqueue({ textChunks: chunks, holdBeforeStart: new Promise<void>((r) => (start = r)), holdBeforeEnd: new Promise<void>((r) => (finish = r)) });
      const id = uniqueId('console-live');
      await startFromPage({ id, task: 'think out loud', model: { provider: 'openai-compatible', model: 'fake-live', baseURL: llm.url } });
      try {
        // The text is sent once the page follows the stream (deltas are not resent to late joiners).
        await page.locator('#stream-state[data-connects="1"]').waitFor();
        const deadline = Date.now() + 60_000;
        while (llm.requests.length === 0) {
          assert.ok(Date.now() < deadline, 'the model was never called');
          await new Promise((r) => setTimeout(r, 50));
        }
        start();
        await page.locator('#live-text pre', { hasText: chunks.join('') }).waitFor();
        assert.equal(await page.locator('#timeline li[data-type="model.call"]').count(), 0, 'shown while the model call is still open');
        await shot('8-live-model-text');
      } finally {
        start();
        finish();
      }
      await page.locator('#timeline li[data-type="session.ended"]').waitFor();
      assert.equal(await page.locator('#live-text').count(), 0, 'the live entry is gone');
      assert.equal(await page.locator('#timeline li[data-type="model.call"] .model-text').innerText(), chunks.join(''));
    } finally {
      await llm.close();
    }
  });

  test('cancel from the page stops a session', async () => {
    const id = uniqueId('console-c');
    await startFromPage({ id, task: 'wait forever', model: scripted([{ text: 'waiting' }]), keepAlive: true });
    await page.locator('h1 [data-status="waiting"]').waitFor();
    await page.locator('#controls input[name="reason"]').fill('enough from the console');
    await page.getByRole('button', { name: 'Cancel session' }).click();
    await page.locator('#timeline li[data-type="session.ended"]').waitFor();
    await page.locator('h1 [data-status="cancelled"]').waitFor();
    const ended = await waitForEvent(stack.sql, id, (e) => e.type === 'session.ended');
    assert.equal(ended.type === 'session.ended' && ended.data.status, 'cancelled');
    assert.match(JSON.stringify(ended.data), /enough from the console/);
    await shot('7-cancelled');
  });

  test('forget key: the page asks for one again', async () => {
    await page.getByRole('button', { name: 'forget key' }).click();
    await page.locator('#key').waitFor();
    assert.equal(await page.evaluate("sessionStorage.getItem('keel.apiKey')"), null);
  });
});
