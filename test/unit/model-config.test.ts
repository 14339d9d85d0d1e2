import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import { MODEL_CONFIG_DEFAULTS, resolveModelConfig, withModelDefaults } from '../../activities/model/config';
import { languageModelFor } from '../../activities/model/providers';
import type { ModelSpec } from '../../common/types';

test('resolveModelConfig maps the environment and fills defaults', () => {
  const c = resolveModelConfig({
    ANTHROPIC_API_KEY: 'ak',
    ANTHROPIC_BASE_URL: 'http://a/v1',
    OPENAI_API_KEY: 'ok',
    OPENAI_BASE_URL: '',
    OPENAI_COMPATIBLE_BASE_URL: 'http://ollama:11434/v1',
    OPENAI_COMPATIBLE_API_KEY: 'ck',
    UNRELATED: 'x',
  });
  assert.deepEqual(c, {
    anthropicApiKey: 'ak',
    anthropicBaseURL: 'http://a/v1',
    openaiApiKey: 'ok',
    openaiBaseURL: MODEL_CONFIG_DEFAULTS.openaiBaseURL,
    compatibleBaseURL: 'http://ollama:11434/v1',
    compatibleApiKey: 'ck',
    requestTimeoutMs: 120_000,
  });
  assert.deepEqual(resolveModelConfig({}), { ...MODEL_CONFIG_DEFAULTS });
});

function notConfigured(spec: ModelSpec, config = {}): ApplicationFailure {
  try {
    languageModelFor(spec, withModelDefaults(config));
  } catch (e) {
    assert.ok(e instanceof ApplicationFailure);
    return e;
  }
  assert.fail('expected a failure');
}

test('a missing key or base URL is a non-retryable Model.NotConfigured naming the env var', () => {
  const cases: Array<[ModelSpec, RegExp]> = [
    [{ provider: 'anthropic', model: 'm' }, /ANTHROPIC_API_KEY/],
    [{ provider: 'openai', model: 'm' }, /OPENAI_API_KEY/],
    [{ provider: 'openai-compatible', model: 'm' }, /OPENAI_COMPATIBLE_BASE_URL/],
    [{ provider: 'scripted', model: 'm' }, /script/],
  ];
  for (const [spec, envVar] of cases) {
    const f = notConfigured(spec);
    assert.equal(f.type, 'Model.NotConfigured', spec.provider);
    assert.equal(f.nonRetryable, true);
    assert.match(f.message, envVar);
  }
});

test('hosted providers refuse a session-chosen baseURL (it would receive the worker key)', () => {
  const f = notConfigured({ provider: 'anthropic', model: 'm', baseURL: 'http://evil/v1' }, { anthropicApiKey: 'k' });
  assert.equal(f.type, 'Model.BadRequest');
  assert.equal(f.nonRetryable, true);
  assert.match(f.message, /ANTHROPIC_BASE_URL/);
});

test('providers build the model the spec names', () => {
  const cfg = withModelDefaults({ anthropicApiKey: 'k', openaiApiKey: 'k', compatibleBaseURL: 'http://x/v1' });
  assert.equal(languageModelFor({ provider: 'anthropic', model: 'claude-x' }, cfg).modelId, 'claude-x');
  const oa = languageModelFor({ provider: 'openai', model: 'gpt-x' }, cfg);
  assert.equal(oa.modelId, 'gpt-x');
  assert.match(oa.provider, /openai\.chat/);
  assert.equal(languageModelFor({ provider: 'openai-compatible', model: 'llama' }, cfg).modelId, 'llama');
  assert.equal(languageModelFor({ provider: 'scripted', model: 'demo', script: [] }, cfg).provider, 'keel.scripted');
});
