/**
 * What model calls cost, for USD budgets: US dollars per million input and output
 * tokens, by model name prefix (longest match wins). List prices as published by
 * the providers in 2026; override per session with `ModelSpec.price`. A model that
 * is in neither has no known cost: a USD budget cannot limit it, and the session
 * records a `budget.warning` saying so. Pure code.
 */
import type { ModelSpec, TokenUsage } from './types';

export interface Price {
  inputPerMTok: number;
  outputPerMTok: number;
}

export const PRICES: ReadonlyArray<readonly [prefix: string, price: Price]> = [
  ['claude-opus', { inputPerMTok: 15, outputPerMTok: 75 }],
  ['claude-sonnet', { inputPerMTok: 3, outputPerMTok: 15 }],
  ['claude-haiku', { inputPerMTok: 0.8, outputPerMTok: 4 }],
  ['gpt-4.1-mini', { inputPerMTok: 0.4, outputPerMTok: 1.6 }],
  ['gpt-4.1', { inputPerMTok: 2, outputPerMTok: 8 }],
  ['gpt-4o-mini', { inputPerMTok: 0.15, outputPerMTok: 0.6 }],
  ['gpt-4o', { inputPerMTok: 2.5, outputPerMTok: 10 }],
  ['gpt-5', { inputPerMTok: 1.25, outputPerMTok: 10 }],
  ['o3', { inputPerMTok: 2, outputPerMTok: 8 }],
  ['o4-mini', { inputPerMTok: 1.1, outputPerMTok: 4.4 }],
];

/** The price of a model: its spec's `price`, else the table; undefined when neither knows it. */
export function priceOf(model: Pick<ModelSpec, 'model' | 'price'>): Price | undefined {
  if (model.price) return model.price;
  let best: readonly [string, Price] | undefined;
  for (const row of PRICES) if (model.model.startsWith(row[0]) && (!best || row[0].length > best[0].length)) best = row;
  return best?.[1];
}

/** Dollars for a token count at a price. */
export function costOf(usage: TokenUsage, price: Price): number {
  return (usage.inputTokens * price.inputPerMTok + usage.outputTokens * price.outputPerMTok) / 1_000_000;
}
