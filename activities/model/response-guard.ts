/**
 * A model's HTTP response is checked before the AI SDK parses it: the SDK (and
 * JSON.stringify after it) recurse over the parsed value, so JSON nested 20,000
 * deep overflowed the stack, and the call failed as if the provider were down,
 * to be retried (and paid for) eight times. A body past the size or nesting limit
 * is refused once, non-retryably, as `Model.BadResponse`.
 *
 * A streamed response (`text/event-stream`) is checked as it flows: bytes and
 * bracket depth are counted over the whole body so far, so the limits mean what
 * they mean for a buffered body (a tool call's arguments arrive in pieces, and
 * their nesting adds up across events), and the stream errors with the same
 * failure the moment one is passed, before the SDK parses the chunk that did it.
 */
import { MAX_MODEL_RESPONSE_BYTES, MAX_MODEL_RESPONSE_DEPTH } from '../../common/defaults';
import { failure, ModelFailure } from '../../common/failures';

/**
 * Deepest nesting of `[` and `{` in `text`, counting those inside strings too (tool arguments
 * arrive as JSON text inside a string); stops early past `stopAt`.
 */
export function bracketDepth(text: string, stopAt = Infinity): number {
  return new DepthCounter().feed(text, stopAt);
}

/**
 * `bracketDepth` over a body that arrives in pieces. Counting bytes is exact for UTF-8:
 * `[ ] { }` are ASCII, and no byte of a multi-byte character is below 0x80.
 */
export class DepthCounter {
  private depth = 0;
  /** Deepest nesting so far. */
  max = 0;

  /** Count `piece`; returns the deepest nesting so far, stopping early past `stopAt`. */
  feed(piece: string | Uint8Array, stopAt = Infinity): number {
    const text = typeof piece === 'string';
    for (let i = 0; i < piece.length; i++) {
      const c = text ? piece.charCodeAt(i) : (piece[i] as number);
      if (c === 0x5b || c === 0x7b) {
        if (++this.depth > this.max && (this.max = this.depth) > stopAt) return this.max;
      } else if ((c === 0x5d || c === 0x7d) && this.depth > 0) this.depth--;
    }
    return this.max;
  }
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

const tooBig = (label: string, limit = MAX_MODEL_RESPONSE_BYTES) => failure(ModelFailure.BadResponse, `${label} sent a response over ${limit} bytes; not parsed`);
const tooDeep = (label: string, limit = MAX_MODEL_RESPONSE_DEPTH) => failure(ModelFailure.BadResponse, `${label} sent a response nested deeper than ${limit} levels; not parsed`);

/** `body` passed through as it arrives, erroring as soon as it passes a limit (smaller limits for tests). */
export function guardedStream(body: ReadableStream<Uint8Array>, label: string, limits = { bytes: MAX_MODEL_RESPONSE_BYTES, depth: MAX_MODEL_RESPONSE_DEPTH }): ReadableStream<Uint8Array> {
  let bytes = 0;
  const depth = new DepthCounter();
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        bytes += chunk.byteLength;
        if (bytes > limits.bytes) return controller.error(tooBig(label, limits.bytes));
        if (depth.feed(chunk, limits.depth) > limits.depth) return controller.error(tooDeep(label, limits.depth));
        controller.enqueue(chunk);
      },
    }),
  );
}

/** `fetch` that refuses successful model responses past the limits before anyone parses them. */
export function guardedFetch(inner: typeof globalThis.fetch, label: string): typeof globalThis.fetch {
  return async (url, init) => {
    const res = await inner(url, init);
    if (!res.ok) return res; // error bodies go to the SDK's error handling, which only reads a message
    if (res.body && res.headers.get('content-type')?.startsWith('text/event-stream')) {
      return new Response(guardedStream(res.body, label), { status: res.status, statusText: res.statusText, headers: res.headers });
    }
    const text = await readCapped(res, MAX_MODEL_RESPONSE_BYTES);
    if (text === undefined) throw tooBig(label);
    if (bracketDepth(text, MAX_MODEL_RESPONSE_DEPTH) > MAX_MODEL_RESPONSE_DEPTH) throw tooDeep(label);
    return new Response(text, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}
