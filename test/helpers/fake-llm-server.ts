/**
 * A local stand-in for the OpenAI Chat Completions and Anthropic Messages
 * APIs (non-streaming), so the real AI SDK providers can be tested without a
 * network. Tests queue replies; the server renders each in the format of the
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
        void self!.handle(req.url ?? '', req.headers, Buffer.concat(chunks).toString('utf8'), (status, headers, body) => {
          res.writeHead(status, { 'content-type': 'application/json', ...headers });
          res.end(JSON.stringify(body));
        });
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
    return send(200, {}, api === 'anthropic' ? anthropicBody(next, n, model) : openaiBody(next, n, model));
  }
}
