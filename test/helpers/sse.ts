/** A Server-Sent Events client for tests and the bench: fetch, parsed by `eventsource-parser`. */
import { createParser, type EventSourceMessage } from 'eventsource-parser';

export interface SseStream {
  /** The response status (200 when the stream opened). */
  status: number;
  /** The JSON body of a refused request. */
  error?: { code: string; message: string };
  /** Resolves when the server closes the stream (or it is aborted). */
  closed: Promise<void>;
  /** Drop the connection, as a client that loses its network would. */
  abort(): void;
}

/** Open `url` with `headers`; `onMessage` hears every message (`event: end` included) in order. */
export async function openSse(url: string, headers: Record<string, string>, onMessage: (m: EventSourceMessage) => void): Promise<SseStream> {
  const ctl = new AbortController();
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: ctl.signal });
  if (res.status !== 200 || !res.body) {
    return { status: res.status, error: (await res.json()) as { code: string; message: string }, closed: Promise.resolve(), abort: () => undefined };
  }
  const parser = createParser({ onEvent: onMessage });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const closed = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } catch (err) {
      if (!ctl.signal.aborted) throw err;
    }
  })();
  return { status: 200, closed, abort: () => ctl.abort() };
}
