/** Webhook specs, the events that trigger them, and the signature a receiver checks. */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { webhookSignature } from '../../activities/webhooks';
import { webhookEventFor, webhookProblems, webhookUrlProblems } from '../../common/webhooks';

test('webhook specs: http(s) only, no credentials in the URL, known events, known fields', () => {
  assert.deepEqual(webhookProblems({ url: 'https://hooks.example/keel' }), []);
  assert.deepEqual(webhookProblems({ url: 'http://127.0.0.1:9/x', events: ['session.ended'] }), []);
  assert.match(webhookProblems('https://x')[0]!, /webhook must be an object/);
  assert.match(webhookProblems({ url: 'ftp://x' })[0]!, /must be http or https, not ftp/);
  assert.match(webhookProblems({ url: 'https://user:pw@x' })[0]!, /must not hold credentials/);
  assert.match(webhookProblems({ url: 'not a url' })[0]!, /is not a URL/);
  assert.match(webhookProblems({ url: 'https://x', events: [] })[0]!, /non-empty list/);
  assert.match(webhookProblems({ url: 'https://x', events: ['tool.call'] })[0]!, /"tool.call" is not one of/);
  assert.match(webhookProblems({ url: 'https://x', secret: 's' })[0]!, /webhook\.secret is not a webhook field/);
  assert.match(webhookUrlProblems(undefined, '--webhook')[0]!, /--webhook must be a URL/);
});

test('which events trigger a webhook', () => {
  const status = (s: string) => webhookEventFor({ seq: 1, type: 'session.status', data: { status: s as never } });
  assert.equal(status('waiting'), 'session.waiting');
  assert.equal(status('budget_exhausted'), 'session.budget_exhausted');
  assert.equal(status('running'), undefined);
  assert.equal(webhookEventFor({ seq: 2, type: 'message.user', data: { text: 'x' } }), undefined);
});

test('the signature is HMAC-SHA256 over "<t>.<body>"', () => {
  const sig = webhookSignature('k', '{"a":1}', 1700000000);
  assert.equal(sig, `t=1700000000,v1=${createHmac('sha256', 'k').update('1700000000.{"a":1}').digest('hex')}`);
  assert.notEqual(webhookSignature('k', '{"a":2}', 1700000000), sig);
});
