/** Model calls through the Vercel AI SDK: activities for workers, plus the pieces tests use. */
export { createModelActivities, type ModelActivityDeps } from './activities';
export { resolveModelConfig, withModelDefaults, MODEL_CONFIG_DEFAULTS, type ModelConfig, type ResolvedModelConfig } from './config';
export { classifyModelError, retryAfterMs } from './errors';
export { toModelMessages } from './messages';
export { languageModelFor } from './providers';
export { ScriptedLanguageModel } from './scripted';
