/**
 * A model's HTTP response is checked before the AI SDK parses it: the SDK (and
 * JSON.stringify after it) recurse over the parsed value, so JSON nested 20,000
 * deep overflowed the stack, and the call failed as if the provider were down,
 * to be retried (and paid for) eight times. A body past the size or nesting limit
 * is refused once, non-retryably, as `Model.BadResponse`.
 */
import { MAX_MODEL_RESPONSE_BYTES, MAX_MODEL_RESPONSE_DEPTH } from '../../common/defaults';
import { failure, ModelFailure } from '../../common/failures';

/**
 * Deepest nesting of `[` and `{` in `text`, counting those inside strings too (tool arguments
 * arrive as JSON text inside a string); stops early past `stopAt`.
 */
export function bracketDepth(text: string, stopAt = Infinity): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5b || c === 0x7b) {
      if (++depth > max && (max = depth) > stopAt) return max;
    } else if ((c === 0x5d || c === 0x7d) && depth > 0) depth--;
  }
  return max;
}

/** The body, read up to `limit` bytes; undefined when it is longer. */
async function readCapped(res: Response, limit: number): Promise<string | undefined> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    if (bytes > limit) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** `fetch` that refuses successful model responses past the limits before anyone parses them. */
export function guardedFetch(inner: typeof globalThis.fetch, label: string): typeof globalThis.fetch {
  return async (url, init) => {
    const res = await inner(url, init);
    if (!res.ok) return res; // error bodies go to the SDK's error handling, which only reads a message
    const text = await readCapped(res, MAX_MODEL_RESPONSE_BYTES);
    if (text === undefined) {
      throw failure(ModelFailure.BadResponse, `${label} sent a response over ${MAX_MODEL_RESPONSE_BYTES} bytes; not parsed`);
    }
    const depth = bracketDepth(text, MAX_MODEL_RESPONSE_DEPTH);
    if (depth > MAX_MODEL_RESPONSE_DEPTH) {
      throw failure(ModelFailure.BadResponse, `${label} sent a response nested deeper than ${MAX_MODEL_RESPONSE_DEPTH} levels; not parsed`);
    }
    return new Response(text, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}
