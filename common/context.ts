/**
 * Context management: what part of a long transcript the model sees, within a
 * token budget. Pure code: the model activity applies it to the transcript it
 * reads from the event log, and an auditor can apply it again.
 *
 * The budget is the model's context window (a table below, or `ModelSpec.contextTokens`)
 * minus its `maxOutputTokens`. Tokens are estimated, never counted: one token per
 * {@link BYTES_PER_TOKEN} bytes of the JSON-escaped UTF-8 text as a request carries it,
 * plus a few per message. Real tokenizers
 * average about 4 bytes a token on English and code and 2.5 to 3.5 on dense data
 * (minified JSON, base64, hex), so the estimate is on the safe side for those; text
 * in scripts whose characters take 3 to 4 bytes each (CJK) can run over it, and a
 * session doing mostly that should set a smaller `contextTokens`.
 *
 * When the transcript does not fit, older tool outputs are elided first (head and
 * tail kept, with a note saying how to get them back with `read_output`), the
 * most recent turns always in full; if that is not enough, the oldest turns are
 * dropped from the window (the task stays pinned at the top).
 */
import { capOutput } from './tools';

/** The estimator's rate: one token per this many bytes of UTF-8. */
export const BYTES_PER_TOKEN = 3;
/** Tokens a message costs beyond its text (role, separators, ids, the provider's JSON keys). */
const MESSAGE_OVERHEAD_TOKENS = 16;
/** The smallest budget Keel accepts: below it not even one turn fits. */
export const MIN_CONTEXT_BUDGET = 2048;

/** Context windows of common models, by name prefix (longest match wins). Override with `ModelSpec.contextTokens`. */
export const CONTEXT_WINDOWS: ReadonlyArray<readonly [prefix: string, tokens: number]> = [
  ['claude-', 200_000],
  ['gpt-4.1', 1_047_576],
  ['gpt-4o', 128_000],
  ['gpt-4-turbo', 128_000],
  ['gpt-5', 400_000],
  ['o1', 200_000],
  ['o3', 200_000],
  ['o4', 200_000],
  ['llama3.1', 128_000],
  ['llama3.2', 128_000],
  ['llama3.3', 128_000],
  ['llama3', 8_192],
  ['qwen2.5', 32_768],
  ['qwen3', 40_960],
  ['mistral', 32_768],
  ['deepseek', 65_536],
];
/** A model missing from the table gets this much. */
export const DEFAULT_CONTEXT_WINDOW = 32_768;

/** The context window of a model: its spec's `contextTokens`, else the table, else {@link DEFAULT_CONTEXT_WINDOW}. */
export function contextWindowOf(model: string, contextTokens?: number): number {
  if (contextTokens !== undefined) return contextTokens;
  let best: readonly [string, number] | undefined;
  for (const row of CONTEXT_WINDOWS) if (model.startsWith(row[0]) && (!best || row[0].length > best[0].length)) best = row;
  return best ? best[1] : DEFAULT_CONTEXT_WINDOW;
}

/** Bytes of `text` as UTF-8, without encoding it. */
export function utf8Bytes(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** The estimate for a piece of text. */
export function estimateTokens(text: string): number {
  return Math.ceil(utf8Bytes(text) / BYTES_PER_TOKEN);
}

/** A tool call in the window: its input in full (the model activity fetches stored inputs first). */
export interface WindowCall {
  id: string;
  name: string;
  input: unknown;
}

/** One entry of the transcript, with every content in full. `seq` is the event it came from. */
export type TranscriptEntry =
  | { kind: 'user'; seq: number; text: string }
  | { kind: 'assistant'; seq: number; text?: string; toolCalls: WindowCall[] }
  | { kind: 'tool'; seq: number; callId: string; name: string; ok: boolean; output: string; stored: boolean };

/** How a tool output is shown: whole (up to the output limit), head and tail, a short head and tail, or only a note. */
export type OutputView = 'full' | 'elided' | 'minimal' | 'hidden';

/** The window after fitting: entries to send, each tool output with how it is shown. */
export interface FittedWindow {
  /** The first event seq still in the window (the next call starts here). */
  fromSeq: number;
  entries: Array<TranscriptEntry & { view?: OutputView; rendered?: string }>;
  /** Tool outputs shown elided (head and tail only). */
  elided: number;
  /** Turns dropped from the window by this fit (in addition to those dropped before). */
  dropped: number;
  estimatedTokens: number;
}

export interface FitOptions {
  /** Tokens the transcript part of the request may use (context window minus output tokens, system prompt and tools). */
  budgetTokens: number;
  /** Most characters of one output the model sees in full. */
  outputLimit: number;
  /** The most recent turns whose outputs are never elided (unless nothing else fits). @default 2 */
  keepRecentTurns?: number;
}

/** Characters of head and tail kept of an elided output, and of a minimal one. */
const ELIDED_HEAD = 600;
const ELIDED_TAIL = 900;
const MINIMAL_HEAD = 150;
const MINIMAL_TAIL = 250;

/** How a tool output reads in the window. */
export function renderOutput(e: { callId: string; output: string; stored?: boolean }, view: OutputView, outputLimit: number): string {
  const again = `read_output with callId "${e.callId}" (and offset, limit) returns`;
  if (view === 'full') {
    const capped = capOutput(e.output, outputLimit);
    return capped === e.output ? capped : `${capped}\n[${again} the whole output in parts]`;
  }
  if (view === 'hidden') return `[${e.output.length} characters not shown to fit the context; ${again} them]`;
  const [head, tail] = view === 'elided' ? [ELIDED_HEAD, ELIDED_TAIL] : [MINIMAL_HEAD, MINIMAL_TAIL];
  if (e.output.length <= head + tail + 200) return e.output;
  const cut = e.output.length - head - tail;
  return `${e.output.slice(0, head)}\n[... ${cut} of ${e.output.length} characters elided to fit the context; ${again} them ...]\n${e.output.slice(e.output.length - tail)}`;
}

/** Long strings inside a tool call's input, shortened (for calls far back in a tight window). */
function shrinkInput(input: unknown, max: number): unknown {
  if (typeof input === 'string') return input.length > max ? `${input.slice(0, max)}[... ${input.length - max} characters not shown]` : input;
  if (Array.isArray(input)) return input.map((v) => shrinkInput(v, max));
  if (input && typeof input === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(input)) out[k] = shrinkInput(v, max);
    return out;
  }
  return input;
}

/** Tokens of text as a request carries it: JSON-escaped (newlines and quotes cost two bytes each). */
function sentTokens(text: string): number {
  return estimateTokens(JSON.stringify(text));
}

/** The estimated tokens of one entry as it will be sent. */
export function entryTokens(e: TranscriptEntry & { rendered?: string }): number {
  switch (e.kind) {
    case 'user':
      return MESSAGE_OVERHEAD_TOKENS + sentTokens(e.text);
    case 'assistant':
      return (
        MESSAGE_OVERHEAD_TOKENS +
        sentTokens(e.text ?? '') +
        // Providers send arguments as a JSON string inside the JSON body: escaped twice.
        e.toolCalls.reduce((n, c) => n + MESSAGE_OVERHEAD_TOKENS + sentTokens(c.id + c.name) + sentTokens(JSON.stringify(c.input) ?? ''), 0)
      );
    case 'tool':
      return MESSAGE_OVERHEAD_TOKENS + sentTokens(e.callId + e.name) + sentTokens(e.rendered ?? e.output);
  }
}

/** Turns: a user message alone, or an assistant message with the tool results that answer it. */
function turnsOf<E extends TranscriptEntry>(entries: readonly E[]): E[][] {
  const turns: E[][] = [];
  for (const e of entries) {
    const last = turns[turns.length - 1];
    if (e.kind === 'tool' && last && last[0]?.kind === 'assistant') last.push(e);
    else if (e.kind !== 'tool') turns.push([e]);
    // A tool result whose call is outside the window is left out: providers refuse it.
  }
  return turns;
}

/**
 * Fit `entries` (the window so far, oldest first, the task NOT included) into the budget.
 * Deterministic: the same entries and options give the same window.
 */
export function fitWindow(entries: readonly TranscriptEntry[], opts: FitOptions): FittedWindow {
  const keep = opts.keepRecentTurns ?? 2;
  const turns = turnsOf(entries.map((e) => (e.kind === 'tool' ? { ...e, view: 'full' as OutputView, rendered: '' } : { ...e })));
  const render = (e: (typeof turns)[number][number]): void => {
    if (e.kind === 'tool') e.rendered = renderOutput(e, e.view ?? 'full', opts.outputLimit);
  };
  for (const t of turns) for (const e of t) render(e);
  const total = (): number => turns.reduce((n, t) => n + t.reduce((m, e) => m + entryTokens(e), 0), 0);

  let tokens = total();
  let elided = 0;
  let dropped = 0;
  // 1. Elide outputs, oldest first, outside the most recent turns.
  for (let i = 0; i < turns.length - keep && tokens > opts.budgetTokens; i++) {
    for (const e of turns[i] ?? []) {
      if (e.kind !== 'tool' || e.view !== 'full') continue;
      const before = entryTokens(e);
      e.view = 'elided';
      render(e);
      if (e.rendered !== e.output) elided++;
      tokens += entryTokens(e) - before;
    }
  }
  // 2. Drop the oldest turns; the newest always stays.
  while (turns.length > 1 && tokens > opts.budgetTokens) {
    const gone = turns.shift() ?? [];
    tokens -= gone.reduce((n, e) => n + entryTokens(e), 0);
    dropped++;
  }
  // 3. Still too big: the newest turn itself shrinks, step by step, until it fits.
  for (const [view, maxText] of [['minimal', 4000], ['hidden', 1000]] as const) {
    if (tokens <= opts.budgetTokens) break;
    for (const t of turns) {
      for (const e of t) {
        if (e.kind === 'tool') {
          if (e.view === 'full') elided++;
          e.view = view;
          render(e);
        } else if (e.kind === 'assistant') {
          e.toolCalls = e.toolCalls.map((c) => ({ ...c, input: shrinkInput(c.input, maxText / 2) }));
          if (e.text) e.text = shrinkInput(e.text, maxText) as string;
        } else {
          e.text = shrinkInput(e.text, maxText) as string;
        }
      }
    }
    tokens = total();
  }
  const kept = turns.flat();
  const first = kept[0];
  return { fromSeq: first ? first.seq : Number.MAX_SAFE_INTEGER, entries: kept, elided, dropped, estimatedTokens: tokens };
}
