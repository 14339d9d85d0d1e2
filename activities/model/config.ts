/** Model provider settings: credentials and endpoints live here, never in a ModelSpec or in workflow history. */
export interface ModelConfig {
  /** Key for the `anthropic` provider (env `ANTHROPIC_API_KEY`). @default undefined (anthropic sessions fail with Model.NotConfigured) */
  anthropicApiKey?: string;
  /** Anthropic API base URL (env `ANTHROPIC_BASE_URL`). @default 'https://api.anthropic.com/v1' */
  anthropicBaseURL?: string;
  /** Key for the `openai` provider (env `OPENAI_API_KEY`). @default undefined (openai sessions fail with Model.NotConfigured) */
  openaiApiKey?: string;
  /** OpenAI API base URL (env `OPENAI_BASE_URL`). @default 'https://api.openai.com/v1' */
  openaiBaseURL?: string;
  /**
   * Base URL of an OpenAI-compatible server such as vLLM, Ollama or llama.cpp
   * (env `OPENAI_COMPATIBLE_BASE_URL`); a session's `ModelSpec.baseURL` overrides it.
   * @default undefined (the session must name one)
   */
  compatibleBaseURL?: string;
  /**
   * Bearer key for the OpenAI-compatible server (env `OPENAI_COMPATIBLE_API_KEY`). Sent only to
   * `compatibleBaseURL`, or to any session-chosen URL when `compatibleBaseURL` is unset.
   * @default undefined (no Authorization header; Ollama and llama.cpp need none)
   */
  compatibleApiKey?: string;
  /** Abort one model request after this many milliseconds (then Model.Unavailable, retryable). @default 120000 */
  requestTimeoutMs?: number;
}

/** {@link ModelConfig} with every default filled in. */
export interface ResolvedModelConfig extends ModelConfig {
  anthropicBaseURL: string;
  openaiBaseURL: string;
  requestTimeoutMs: number;
}

export const MODEL_CONFIG_DEFAULTS = {
  anthropicBaseURL: 'https://api.anthropic.com/v1',
  openaiBaseURL: 'https://api.openai.com/v1',
  requestTimeoutMs: 120_000,
} as const;

function nonEmpty(v: string | undefined): string | undefined {
  const t = v?.trim();
  return t ? t : undefined;
}

/** Fill defaults. Explicit fields win; empty strings count as unset. */
export function withModelDefaults(config: ModelConfig): ResolvedModelConfig {
  const out: ResolvedModelConfig = {
    anthropicBaseURL: nonEmpty(config.anthropicBaseURL) ?? MODEL_CONFIG_DEFAULTS.anthropicBaseURL,
    openaiBaseURL: nonEmpty(config.openaiBaseURL) ?? MODEL_CONFIG_DEFAULTS.openaiBaseURL,
    requestTimeoutMs: config.requestTimeoutMs ?? MODEL_CONFIG_DEFAULTS.requestTimeoutMs,
  };
  const optional = {
    anthropicApiKey: nonEmpty(config.anthropicApiKey),
    openaiApiKey: nonEmpty(config.openaiApiKey),
    compatibleBaseURL: nonEmpty(config.compatibleBaseURL),
    compatibleApiKey: nonEmpty(config.compatibleApiKey),
  };
  for (const [k, v] of Object.entries(optional)) if (v !== undefined) (out as unknown as Record<string, string>)[k] = v;
  return out;
}

/**
 * Build the model config from an environment (the worker passes `process.env`;
 * activities never read it themselves).
 */
export function resolveModelConfig(env: Record<string, string | undefined>): ResolvedModelConfig {
  const timeout = Number(env.KEEL_MODEL_TIMEOUT_MS);
  return withModelDefaults({
    anthropicApiKey: env.ANTHROPIC_API_KEY,
    anthropicBaseURL: env.ANTHROPIC_BASE_URL,
    openaiApiKey: env.OPENAI_API_KEY,
    openaiBaseURL: env.OPENAI_BASE_URL,
    compatibleBaseURL: env.OPENAI_COMPATIBLE_BASE_URL,
    compatibleApiKey: env.OPENAI_COMPATIBLE_API_KEY,
    requestTimeoutMs: Number.isFinite(timeout) && timeout > 0 ? timeout : undefined,
  });
}

/** The secrets in a config, so error messages can be scrubbed of them. */
export function secretsOf(config: ModelConfig): string[] {
  return [config.anthropicApiKey, config.openaiApiKey, config.compatibleApiKey].filter(
    (s): s is string => typeof s === 'string' && s.length >= 4,
  );
}
