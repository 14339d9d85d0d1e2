/**
 * The real AI SDK providers (anthropic, openai, openai-compatible) against a
 * local fake of their HTTP APIs: what we send, what we map back, and how each
 * failure is classified.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createModelActivities, type ModelConfig } from '../../activities/model';
import { connect } from '../../store';
import { scratchBlobs } from '../helpers/env';

/** The legacy path (whole messages) reads neither the event log nor stored content; postgres.js connects lazily. */
const deps = { sql: connect('postgres://keel@127.0.0.1:1/unused'), blobs: scratchBlobs() };
import { toolNames } from '../../common/tools';
import type { Message, ModelSpec } from '../../common/types';
import { FakeLlmServer, type RecordedRequest } from '../helpers/fake-llm-server';

let fake: FakeLlmServer;
before(async () => {
  fake = await FakeLlmServer.start();
});
after(async () => {
  await fake.close();
});
beforeEach(() => fake.reset());

const KEY = 'sk-test-7f3a9c1e5b2d';

interface ProviderCase {
  provider: ModelSpec['provider'];
  config: () => ModelConfig;
  missingKeyConfig: () => ModelConfig;
  missingEnvVar: RegExp;
  authHeader: (r: RecordedRequest) => string | undefined;
  /** Tool names offered in the request. */
  toolsSent: (body: any) => string[];
  /** System prompt as sent. */
  systemSent: (body: any) => string;
  /** The tool result for `callId` in the request, as text. */
  toolResultSent: (body: any, callId: string) => string | undefined;
  /** The assistant tool-call input for `callId` in the request. */
  toolCallInputSent: (body: any, callId: string) => unknown;
  /** Raw argument text the provider can send; anthropic can only send JSON values. */
  invalidArgs: string | Record<string, unknown>;
  expectedInvalidInput: unknown;
}

const openaiShape = {
  toolsSent: (b: any) => b.tools.map((t: any) => t.function.name),
  systemSent: (b: any) => b.messages.find((m: any) => m.role === 'system')?.content,
  toolResultSent: (b: any, id: string) => b.messages.find((m: any) => m.role === 'tool' && m.tool_call_id === id)?.content,
  toolCallInputSent: (b: any, id: string) => {
    const call = b.messages.flatMap((m: any) => m.tool_calls ?? []).find((c: any) => c.id === id);
    return call ? JSON.parse(call.function.arguments) : undefined;
  },
  authHeader: (r: RecordedRequest) => r.headers.authorization as string | undefined,
  // Unterminated JSON, as a model cut off mid-arguments would send.
  invalidArgs: '{"command": "ls',
  expectedInvalidInput: '{"command": "ls',
};

const cases: ProviderCase[] = [
  {
    provider: 'anthropic',
    config: () => ({ anthropicApiKey: KEY, anthropicBaseURL: fake.url }),
    missingKeyConfig: () => ({ anthropicBaseURL: fake.url }),
    missingEnvVar: /ANTHROPIC_API_KEY/,
    authHeader: (r) => r.headers['x-api-key'] as string | undefined,
    toolsSent: (b) => b.tools.map((t: any) => t.name),
    systemSent: (b) => (Array.isArray(b.system) ? b.system.map((s: any) => s.text).join('') : b.system),
    toolResultSent: (b, id) => {
      const part = b.messages.flatMap((m: any) => (Array.isArray(m.content) ? m.content : [])).find((p: any) => p.type === 'tool_result' && p.tool_use_id === id);
      if (!part) return undefined;
      return typeof part.content === 'string' ? part.content : part.content.map((c: any) => c.text).join('');
    },
    toolCallInputSent: (b, id) =>
      b.messages.flatMap((m: any) => (Array.isArray(m.content) ? m.content : [])).find((p: any) => p.type === 'tool_use' && p.id === id)?.input,
    // The Messages API returns input as JSON, so "invalid" here means valid JSON that breaks the schema.
    invalidArgs: { command: 42, extra: true },
    expectedInvalidInput: { command: 42, extra: true },
  },
  {
    provider: 'openai',
    config: () => ({ openaiApiKey: KEY, openaiBaseURL: fake.url }),
    missingKeyConfig: () => ({ openaiBaseURL: fake.url }),
    missingEnvVar: /OPENAI_API_KEY/,
    ...openaiShape,
  },
  {
    provider: 'openai-compatible',
    config: () => ({ compatibleBaseURL: fake.url, compatibleApiKey: KEY }),
    missingKeyConfig: () => ({}),
    missingEnvVar: /OPENAI_COMPATIBLE_BASE_URL/,
    ...openaiShape,
  },
];

const user: Message = { role: 'user', text: 'List the files, please.' };

async function failure(p: Promise<unknown>): Promise<ApplicationFailure> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

for (const c of cases) {
  describe(`provider ${c.provider}`, () => {
    const spec: ModelSpec = { provider: c.provider, model: 'test-model-1' };
    const call = (messages: Message[], config = c.config()) =>
      createModelActivities({ config, ...deps }).callModel({ sessionId: 's-1', model: spec, system: 'You are Keel.', messages });

    test('tool call round trip: tools and auth sent, calls and usage mapped, results sent back', async () => {
      fake.enqueue({ text: 'Looking.', toolCalls: [{ id: 'call_a1', name: 'shell', args: { command: 'ls -la' } }], usage: { input: 123, output: 45 } });
      const turn = await call([user]);
      assert.equal(turn.text, 'Looking.');
      assert.deepEqual(turn.toolCalls, [{ id: 'call_a1', name: 'shell', input: { command: 'ls -la' } }]);
      assert.equal(turn.finishReason, 'tool-calls');
      assert.deepEqual(turn.usage, { inputTokens: 123, outputTokens: 45 });
      assert.ok(turn.durationMs >= 0);

      const first = fake.last();
      assert.equal(c.authHeader(first)?.replace(/^Bearer /, ''), KEY);
      assert.deepEqual([...c.toolsSent(first.body)].sort(), [...toolNames].sort());
      assert.equal(c.systemSent(first.body), 'You are Keel.');
      assert.equal(first.body.model, 'test-model-1');
      assert.equal(first.body.stream, true, 'the answer is streamed (live text deltas)');
      if (c.provider !== 'anthropic') assert.deepEqual(first.body.stream_options, { include_usage: true }, 'a streamed answer reports its tokens only when asked');

      fake.enqueue({ text: 'There is one file: a.txt', usage: { input: 200, output: 9 } });
      const second = await call([
        user,
        { role: 'assistant', text: 'Looking.', toolCalls: turn.toolCalls },
        { role: 'tool', results: [{ callId: 'call_a1', name: 'shell', ok: true, output: 'a.txt\n', exitCode: 0 }] },
      ]);
      assert.equal(second.text, 'There is one file: a.txt');
      assert.deepEqual(second.toolCalls, []);
      assert.equal(second.finishReason, 'stop');
      assert.deepEqual(second.usage, { inputTokens: 200, outputTokens: 9 });
      const body = fake.last().body;
      assert.equal(c.toolResultSent(body, 'call_a1'), 'a.txt\n');
      assert.deepEqual(c.toolCallInputSent(body, 'call_a1'), { command: 'ls -la' });
      assert.equal(fake.requests.length, 2, 'one HTTP request per callModel (no SDK retries, no extra steps)');
    });

    test('an unknown tool and invalid arguments come back as calls, not errors', async () => {
      fake.enqueue({
        toolCalls: [
          { id: 'call_u', name: 'launch_rockets', args: { count: 3 } },
          { id: 'call_b', name: 'shell', args: c.invalidArgs },
        ],
      });
      const turn = await call([user]);
      assert.deepEqual(turn.toolCalls, [
        { id: 'call_u', name: 'launch_rockets', input: { count: 3 } },
        { id: 'call_b', name: 'shell', input: c.expectedInvalidInput },
      ]);
      // The workflow answers those with error results; sending them back must work too.
      fake.enqueue({ text: 'Sorry.' });
      await call([
        user,
        { role: 'assistant', toolCalls: turn.toolCalls },
        {
          role: 'tool',
          results: [
            { callId: 'call_u', name: 'launch_rockets', ok: false, output: 'Unknown tool "launch_rockets".', error: 'UnknownTool' },
            { callId: 'call_b', name: 'shell', ok: false, output: 'Invalid arguments for shell', error: 'InvalidArguments' },
          ],
        },
      ]);
      const body = fake.last().body;
      assert.equal(c.toolResultSent(body, 'call_u'), 'Unknown tool "launch_rockets".');
      const resent = c.toolCallInputSent(body, 'call_b');
      assert.ok(resent !== null && typeof resent === 'object' && !Array.isArray(resent), 'tool input sent back is an object');
    });

    test('429 is a retryable Model.RateLimit with nextRetryDelay from retry-after', async () => {
      fake.enqueue({ error: { status: 429, message: 'slow down', headers: { 'retry-after': '7' } } });
      const f = await failure(call([user]));
      assert.equal(f.type, 'Model.RateLimit');
      assert.equal(f.nonRetryable, false);
      assert.equal(f.nextRetryDelay, 7000);
    });

    test('401 is a non-retryable Model.Auth and the key is not in the message', async () => {
      fake.enqueue({ error: { status: 401, message: `Incorrect API key provided: ${KEY}` } });
      const f = await failure(call([user]));
      assert.equal(f.type, 'Model.Auth');
      assert.equal(f.nonRetryable, true);
      assert.doesNotMatch(f.message, new RegExp(KEY));
      assert.doesNotMatch(JSON.stringify(f.details), new RegExp(KEY));
      assert.match(f.message, /\[redacted\]/);
    });

    test('500 is a retryable Model.Unavailable; other 4xx a non-retryable Model.BadRequest', async () => {
      fake.enqueue({ error: { status: 500, message: 'overloaded' } });
      const f = await failure(call([user]));
      assert.equal(f.type, 'Model.Unavailable');
      assert.equal(f.nonRetryable, false);
      fake.enqueue({ error: { status: 400, message: 'context too long' } });
      const g = await failure(call([user]));
      assert.equal(g.type, 'Model.BadRequest');
      assert.equal(g.nonRetryable, true);
      assert.match(g.message, /context too long/);
    });

    test('no credentials is a non-retryable Model.NotConfigured naming the env var, and nothing is sent', async () => {
      const f = await failure(call([user], c.missingKeyConfig()));
      assert.equal(f.type, 'Model.NotConfigured');
      assert.equal(f.nonRetryable, true);
      assert.match(f.message, c.missingEnvVar);
      assert.equal(fake.requests.length, 0);
    });
  });
}

describe('transport failures and cancellation', () => {
  const spec: ModelSpec = { provider: 'openai', model: 'gpt-test' };

  test('retry-after as an HTTP date sets nextRetryDelay', async () => {
    const at = new Date(Date.now() + 30_000).toUTCString();
    fake.enqueue({ error: { status: 429, headers: { 'retry-after': at } } });
    const f = await failure(
      createModelActivities({ config: { anthropicApiKey: KEY, anthropicBaseURL: fake.url }, ...deps }).callModel({
        sessionId: 's',
        model: { provider: 'anthropic', model: 'claude-test' },
        system: '',
        messages: [user],
      }),
    );
    assert.equal(f.type, 'Model.RateLimit');
    assert.equal(typeof f.nextRetryDelay, 'number');
    assert.ok((f.nextRetryDelay as number) > 25_000 && (f.nextRetryDelay as number) <= 30_000, String(f.nextRetryDelay));
  });

  test('a slow server hits requestTimeoutMs: retryable Model.Unavailable', async () => {
    fake.enqueue({ text: 'late', delayMs: 2_000 });
    const t0 = Date.now();
    const f = await failure(
      createModelActivities({ config: { openaiApiKey: KEY, openaiBaseURL: fake.url, requestTimeoutMs: 200 }, ...deps }).callModel({
        sessionId: 's',
        model: spec,
        system: '',
        messages: [user],
      }),
    );
    assert.equal(f.type, 'Model.Unavailable');
    assert.equal(f.nonRetryable, false);
    assert.match(f.message, /200 ms/);
    assert.ok(Date.now() - t0 < 1_500);
  });

  test('connection refused is a retryable Model.Unavailable', async () => {
    const f = await failure(
      createModelActivities({ config: { openaiApiKey: KEY, openaiBaseURL: 'http://127.0.0.1:1/v1' }, ...deps }).callModel({
        sessionId: 's',
        model: spec,
        system: '',
        messages: [user],
      }),
    );
    assert.equal(f.type, 'Model.Unavailable');
    assert.equal(f.nonRetryable, false);
  });

  test('activity cancellation aborts the HTTP request and is not turned into a Model failure', async () => {
    fake.enqueue({ text: 'late', delayMs: 3_000 });
    const env = new MockActivityEnvironment();
    const { callModel } = createModelActivities({ config: { openaiApiKey: KEY, openaiBaseURL: fake.url }, ...deps });
    const t0 = Date.now();
    const p = env.run(callModel, { sessionId: 's', model: spec, system: '', messages: [user] });
    setTimeout(() => env.cancel(), 100);
    await assert.rejects(p, (err: unknown) => {
      assert.ok(!(err instanceof ApplicationFailure), `got ${String(err)}`);
      return true;
    });
    assert.ok(Date.now() - t0 < 2_000, 'the request was aborted, not waited for');
  });

  for (const provider of ['openai', 'anthropic'] as const) {
    test(`${provider}: a streamed answer nested past the limit is a non-retryable Model.BadResponse, not an outage`, async () => {
      fake.enqueue({ toolCalls: [{ name: 'shell', args: `{"command": ${'['.repeat(20_000)}${']'.repeat(20_000)}}` }] });
      const config = provider === 'openai' ? { openaiApiKey: KEY, openaiBaseURL: fake.url } : { anthropicApiKey: KEY, anthropicBaseURL: fake.url };
      const f = await failure(createModelActivities({ config, ...deps }).callModel({ sessionId: 's', model: { provider, model: 'm' }, system: '', messages: [user] }));
      assert.equal(f.type, 'Model.BadResponse');
      assert.equal(f.nonRetryable, true);
      assert.match(f.message, /nested deeper than 1000 levels/);
    });
  }

  test('openai-compatible: ModelSpec.baseURL overrides config, and the configured key is not sent elsewhere', async () => {
    fake.enqueue({ text: 'hi' });
    const { callModel } = createModelActivities({
      ...deps,
      config: { compatibleBaseURL: 'http://127.0.0.1:1/v1', compatibleApiKey: KEY },
    });
    const turn = await callModel({
      sessionId: 's',
      model: { provider: 'openai-compatible', model: 'llama3.1', baseURL: fake.url },
      system: '',
      messages: [user],
    });
    assert.equal(turn.text, 'hi');
    assert.equal(fake.requests.length, 1);
    assert.equal(fake.last().headers.authorization, undefined);
  });
});
