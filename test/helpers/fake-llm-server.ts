/**
 * A local stand-in for the OpenAI Chat Completions and Anthropic Messages
 * APIs, so the real AI SDK providers can be tested without a network. A
 * request with `"stream": true` (what Keel sends) is answered with Server-Sent
 * Events in the provider's streaming format; others with one JSON body. Tests queue replies; the server renders each in the format of the
 * endpoint that was called and records every request it receives.
 *
 *   POST {url}/chat/completions   OpenAI and OpenAI-compatible
 *   POST {url}/messages           Anthropic
 *
 * With an empty queue it answers 500 and says so, so a test that makes one
 * request too many fails loudly.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeToolCall {
  /** @default `call_<n>` / `toolu_<n>` */
  id?: string;
  name: string;
  /** An object, or raw argument text (which may be invalid JSON). */
  args: Record<string, unknown> | string;
}

export interface FakeReply {
  text?: string;
  toolCalls?: FakeToolCall[];
  /** @default { input: 11, output: 7 } */
  usage?: { input: number; output: number };
  /** Wait this long before answering (to test timeouts and cancellation). */
  delayMs?: number;
  /** Streamed: the text in these pieces, one event each (default: the whole text in one). Their join is `text`. */
  textChunks?: string[];
  /** Streamed: waited for after the first event (the stream is open), before any text. */
  holdBeforeStart?: Promise<void>;
  /** Streamed: sent after the text and tool calls, before the finish and usage events (default: nothing to wait for). */
  holdBeforeEnd?: Promise<void>;
  /** Streamed: raw bytes sent in place of the whole stream (to test the response guard). */
  rawStream?: string;
}

export interface FakeError {
  error: { status: number; message?: string; headers?: Record<string, string> };
  delayMs?: number;
}

export type FakeResponse = FakeReply | FakeError;

export interface RecordedRequest {
  api: 'openai' | 'anthropic';
  path: string;
  headers: IncomingHttpHeaders;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

function isError(r: FakeResponse): r is FakeError {
  return 'error' in r;
}

function openaiBody(r: FakeReply, n: number, model: string) {
  const calls = r.toolCalls ?? [];
  return {
    id: `chatcmpl-${n}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: r.text ?? null,
          ...(calls.length
            ? {
                tool_calls: calls.map((c, i) => ({
                  id: c.id ?? `call_${n}_${i}`,
                  type: 'function',
                  function: { name: c.name, arguments: typeof c.args === 'string' ? c.args : JSON.stringify(c.args) },
                })),
              }
            : {}),
        },
        finish_reason: calls.length ? 'tool_calls' : 'stop',
      },
    ],
    usage: {
      prompt_tokens: r.usage?.input ?? 11,
      completion_tokens: r.usage?.output ?? 7,
      total_tokens: (r.usage?.input ?? 11) + (r.usage?.output ?? 7),
    },
  };
}

function anthropicBody(r: FakeReply, n: number, model: string) {
  const calls = r.toolCalls ?? [];
  return {
    id: `msg_${n}`,
    type: 'message',
    role: 'assistant',
    model,
    content: [
      ...(r.text ? [{ type: 'text', text: r.text }] : []),
      // Anthropic sends input as JSON, never as text; a string here stands for a non-object input.
      ...calls.map((c, i) => ({ type: 'tool_use', id: c.id ?? `toolu_${n}_${i}`, name: c.name, input: c.args })),
    ],
    stop_reason: calls.length ? 'tool_use' : 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: r.usage?.input ?? 11, output_tokens: r.usage?.output ?? 7 },
  };
}

type Write = (chunk: string) => void;

async function streamOpenai(r: FakeReply, n: number, model: string, write: Write): Promise<void> {
  const base = { id: `chatcmpl-${n}`, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model };
  const event = (choices: unknown[], extra: Record<string, unknown> = {}) => write(`data: ${JSON.stringify({ ...base, choices, ...extra })}\n\n`);
  event([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]);
  await r.holdBeforeStart;
  for (const piece of r.textChunks ?? (r.text ? [r.text] : [])) event([{ index: 0, delta: { content: piece }, finish_reason: null }]);
  const calls = r.toolCalls ?? [];
  calls.forEach((c, i) => {
    const args = typeof c.args === 'string' ? c.args : JSON.stringify(c.args);
    event([{ index: 0, delta: { tool_calls: [{ index: i, id: c.id ?? `call_${n}_${i}`, type: 'function', function: { name: c.name, arguments: '' } }] }, finish_reason: null }]);
    event([{ index: 0, delta: { tool_calls: [{ index: i, function: { arguments: args } }] }, finish_reason: null }]);
  });
  await r.holdBeforeEnd;
  event([{ index: 0, delta: {}, finish_reason: calls.length ? 'tool_calls' : 'stop' }]);
  const input = r.usage?.input ?? 11;
  const output = r.usage?.output ?? 7;
  event([], { usage: { prompt_tokens: input, completion_tokens: output, total_tokens: input + output } });
  write('data: [DONE]\n\n');
}

async function streamAnthropic(r: FakeReply, n: number, model: string, write: Write): Promise<void> {
  const event = (type: string, data: Record<string, unknown>) => write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  event('message_start', {
    message: { id: `msg_${n}`, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: r.usage?.input ?? 11, output_tokens: 1 } },
  });
  await r.holdBeforeStart;
  let index = 0;
  const pieces = r.textChunks ?? (r.text ? [r.text] : []);
  if (pieces.length) {
    event('content_block_start', { index, content_block: { type: 'text', text: '' } });
    for (const text of pieces) event('content_block_delta', { index, delta: { type: 'text_delta', text } });
    event('content_block_stop', { index });
    index++;
  }
  const calls = r.toolCalls ?? [];
  calls.forEach((c, i) => {
    event('content_block_start', { index, content_block: { type: 'tool_use', id: c.id ?? `toolu_${n}_${i}`, name: c.name, input: {} } });
    // Streamed, Anthropic sends input as JSON text; a string here is sent as it is (it may be invalid JSON).
    event('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: typeof c.args === 'string' ? c.args : JSON.stringify(c.args) } });
    event('content_block_stop', { index });
    index++;
  });
  await r.holdBeforeEnd;
  event('message_delta', { delta: { stop_reason: calls.length ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: r.usage?.output ?? 7 } });
  event('message_stop', {});
}

function errorBody(api: 'openai' | 'anthropic', status: number, message: string) {
  if (api === 'anthropic') {
    const type = status === 401 ? 'authentication_error' : status === 429 ? 'rate_limit_error' : 'api_error';
    return { type: 'error', error: { type, message } };
  }
  return { error: { message, type: status === 429 ? 'rate_limit_exceeded' : 'error', code: null } };
}

/** Answers requests when the queue is empty: gets the parsed request body and its number (1-based). */
export type Responder = (body: unknown, n: number) => FakeResponse;

export class FakeLlmServer {
  /** Every request received, in order (bodies dropped when `keepBodies` is false). */
  readonly requests: RecordedRequest[] = [];
  /** Size in bytes of every request body received, in order. */
  readonly bodyBytes: number[] = [];
  /** Keep each request's parsed body in `requests` (turn off for thousands of large requests). */
  keepBodies = true;
  private readonly queue: FakeResponse[] = [];
  private responder: Responder | undefined;
  private served = 0;

  private constructor(
    private readonly server: Server,
    /** Base URL to give a provider, e.g. `http://127.0.0.1:41234/v1`. */
    readonly url: string,
  ) {}

  /** Listen on 127.0.0.1 on a random free port. */
  static async start(): Promise<FakeLlmServer> {
    let self: FakeLlmServer | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const send = (status: number, headers: Record<string, string>, body: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json', ...headers });
          res.end(JSON.stringify(body));
        };
        const stream = async (render: (write: Write) => Promise<void>) => {
          res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
          try {
            await render((chunk) => res.write(chunk));
          } finally {
            res.end();
          }
        };
        void self!.handle(req.url ?? '', req.headers, Buffer.concat(chunks).toString('utf8'), send, stream);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    self = new FakeLlmServer(server, `http://127.0.0.1:${port}/v1`);
    return self;
  }

  /** Queue the next responses, served in order whatever the endpoint. */
  enqueue(...responses: FakeResponse[]): this {
    this.queue.push(...responses);
    return this;
  }

  /** Answer with `fn` whenever the queue is empty (a model that never runs out of turns). */
  respond(fn: Responder | undefined): this {
    this.responder = fn;
    return this;
  }

  /** Forget queued responses, the responder and recorded requests. */
  reset(): void {
    this.queue.length = 0;
    this.requests.length = 0;
    this.bodyBytes.length = 0;
    this.responder = undefined;
    this.served = 0;
    this.keepBodies = true;
  }

  /** The last request received (throws when there is none). */
  last(): RecordedRequest {
    const r = this.requests[this.requests.length - 1];
    if (!r) throw new Error('fake-llm-server: no request received');
    return r;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(
    path: string,
    headers: IncomingHttpHeaders,
    raw: string,
    send: (status: number, headers: Record<string, string>, body: unknown) => void,
    stream: (render: (write: Write) => Promise<void>) => Promise<void>,
  ): Promise<void> {
    const api = path.endsWith('/messages') ? 'anthropic' : path.endsWith('/chat/completions') ? 'openai' : undefined;
    if (!api) return send(404, {}, { error: { message: `fake-llm-server: no route for ${path}` } });
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      return send(400, {}, errorBody(api, 400, 'fake-llm-server: request body is not JSON'));
    }
    this.bodyBytes.push(Buffer.byteLength(raw, 'utf8'));
    this.requests.push({ api, path, headers, body: this.keepBodies ? body : undefined });
    const n = ++this.served;
    const next = this.queue.shift() ?? this.responder?.(body, n);
    if (!next) return send(500, {}, errorBody(api, 500, 'fake-llm-server: no scripted response left'));
    if (next.delayMs) await new Promise((r) => setTimeout(r, next.delayMs));
    const model = String((body as { model?: unknown }).model ?? 'fake');
    if (isError(next)) {
      const { status, message, headers: h } = next.error;
      return send(status, h ?? {}, errorBody(api, status, message ?? `fake error ${status}`));
    }
    if ((body as { stream?: unknown }).stream === true) {
      if (next.rawStream !== undefined) return stream(async (write) => write(next.rawStream!));
      return stream((write) => (api === 'anthropic' ? streamAnthropic(next, n, model, write) : streamOpenai(next, n, model, write)));
    }
    return send(200, {}, api === 'anthropic' ? anthropicBody(next, n, model) : openaiBody(next, n, model));
  }
}
