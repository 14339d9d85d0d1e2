import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import type { LanguageModelV3 } from '@ai-sdk/provider';
import type { ApplicationFailure } from '@temporalio/common';
import { failure, ModelFailure } from '../../common/failures';
import type { ModelSpec } from '../../common/types';
import type { ResolvedModelConfig } from './config';
import { ScriptedLanguageModel } from './scripted';

function notConfigured(message: string): ApplicationFailure {
  return failure(ModelFailure.NotConfigured, message);
}

/**
 * Hosted providers get their base URL from the worker only. Honouring a
 * session's `baseURL` there would send the worker's API key to any host a
 * client names, so it is refused rather than silently ignored.
 */
function refuseSpecBaseURL(spec: ModelSpec, envVar: string): void {
  if (spec.baseURL) {
    throw failure(
      ModelFailure.BadRequest,
      `ModelSpec.baseURL is not accepted for provider "${spec.provider}": the worker's API key would be sent to it. ` +
        `Set ${envVar} on the worker instead.`,
    );
  }
}

const sameURL = (a: string, b: string) => a.replace(/\/+$/, '') === b.replace(/\/+$/, '');

/**
 * The AI SDK language model for a session's ModelSpec. Base URLs are always
 * passed explicitly so the provider packages never fall back to reading
 * process.env themselves.
 *
 * `openai` uses the Chat Completions API (`provider.chat`), not Responses:
 * it is the API every OpenAI-compatible server also speaks, so one tested
 * request shape covers both.
 *
 * @throws ApplicationFailure `Model.NotConfigured` (non-retryable) naming the env var to set.
 */
export function languageModelFor(
  spec: ModelSpec,
  config: ResolvedModelConfig,
  opts: { fetch?: typeof globalThis.fetch; turn?: number } = {},
): LanguageModelV3 {
  const fetch = opts.fetch ? { fetch: opts.fetch } : {};
  switch (spec.provider) {
    case 'scripted':
      if (!spec.script) throw notConfigured('The scripted model needs ModelSpec.script (the turns it plays).');
      return new ScriptedLanguageModel(spec.model, spec.script, opts.turn);
    case 'anthropic':
      refuseSpecBaseURL(spec, 'ANTHROPIC_BASE_URL');
      if (!config.anthropicApiKey) throw notConfigured('No Anthropic API key: set ANTHROPIC_API_KEY for the worker.');
      return createAnthropic({ apiKey: config.anthropicApiKey, baseURL: config.anthropicBaseURL, ...fetch })(spec.model);
    case 'openai':
      refuseSpecBaseURL(spec, 'OPENAI_BASE_URL');
      if (!config.openaiApiKey) throw notConfigured('No OpenAI API key: set OPENAI_API_KEY for the worker.');
      return createOpenAI({ apiKey: config.openaiApiKey, baseURL: config.openaiBaseURL, ...fetch }).chat(spec.model);
    case 'openai-compatible': {
      const baseURL = spec.baseURL || config.compatibleBaseURL;
      if (!baseURL) {
        throw notConfigured(
          'No base URL for the OpenAI-compatible provider: set OPENAI_COMPATIBLE_BASE_URL for the worker or ModelSpec.baseURL.',
        );
      }
      // The key belongs to the configured server; never hand it to a URL a session chose instead.
      const keyAllowed = !config.compatibleBaseURL || sameURL(baseURL, config.compatibleBaseURL);
      const apiKey = keyAllowed ? config.compatibleApiKey : undefined;
      // includeUsage: a streamed answer reports tokens only when asked (`stream_options.include_usage`), and budgets need them.
      return createOpenAICompatible({ name: 'openai-compatible', baseURL, includeUsage: true, ...(apiKey ? { apiKey } : {}), ...fetch }).chatModel(spec.model);
    }
    default: {
      const provider: never = spec.provider;
      throw notConfigured(`Unknown model provider "${String(provider)}": use scripted, anthropic, openai or openai-compatible.`);
    }
  }
}
