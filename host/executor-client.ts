/**
 * Talks to the executor inside one sandbox container over a single attach
 * stream (the container's stdin/stdout), multiplexing concurrent requests by id.
 *
 * The stream can die (daemon restart, network blip, container restart). The
 * client then re-attaches and re-sends every request still in flight: safe,
 * because tool requests carry an idempotency key and the executor answers a
 * repeated key from its journal instead of running it again. Docker keeps the
 * container's stdin open across attaches (OpenStdin, StdinOnce=false), so a new
 * client, e.g. in a worker that replaced a SIGKILLed one, talks to the same
 * executor.
 */
import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type Docker from 'dockerode';
import { statusOf } from './docker-errors';

/** One answer from the executor. */
export type ExecutorResponse =
  | { id: string; ok: true; result: Record<string, unknown>; replayed?: boolean }
  | { id: string; ok: false; error: { code: string; message: string }; replayed?: boolean };

export interface RequestOptions {
  /** Request id; pass one to be able to `cancel` it. @default a fresh id from {@link ExecutorClient.newRequestId} */
  id?: string;
  /** Idempotency key: a repeated key is answered from the executor's journal, never run twice. */
  key?: string;
  /** Reject with {@link ExecutorTimeoutError} when no answer came in this time. @default no limit */
  timeoutMs?: number;
}

/** The container is gone or stopped: nothing in it can answer. */
export class ExecutorGoneError extends Error {
  constructor(readonly containerId: string, readonly detail: string) {
    super(`container ${containerId.slice(0, 12)}: ${detail}`);
    this.name = 'ExecutorGoneError';
  }
}

/** No answer within the request's `timeoutMs`. */
export class ExecutorTimeoutError extends Error {
  constructor(readonly requestId: string, readonly op: string, timeoutMs: number) {
    super(`executor did not answer ${op} request ${requestId} within ${timeoutMs} ms`);
    this.name = 'ExecutorTimeoutError';
  }
}

interface Pending {
  op: string;
  line: string;
  resolve: (r: ExecutorResponse) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

type AttachStream = NodeJS.ReadWriteStream & { destroy?: () => void; ref?: () => void; unref?: () => void };

const RECONNECT_ATTEMPTS = 8;
/** Longest line the executor sends (snapshot chunks are ~1.4 MB of base64); anything longer is hostile. */
const MAX_LINE_CHARS = 64 * 1024 * 1024;

export class ExecutorClient {
  private stream: AttachStream | undefined;
  private connecting: Promise<void> | undefined;
  private reconnecting = false;
  private readonly pending = new Map<string, Pending>();
  private closed = false;
  private seq = 0;
  private readonly prefix = randomUUID().slice(0, 8);

  constructor(
    private readonly docker: Docker,
    readonly containerId: string,
    private readonly log: (msg: string) => void = () => {},
  ) {}

  /** A request id unique to this client (and, by its random prefix, across clients). */
  newRequestId(): string {
    return `${this.prefix}-${++this.seq}`;
  }

  /**
   * Attach to the container if not attached. With `requireRunning` (the default) a
   * missing or stopped container fails with {@link ExecutorGoneError}; provisioning
   * passes false to attach to a created container before starting it.
   */
  connect(opts: { requireRunning?: boolean } = {}): Promise<void> {
    if (this.closed) return Promise.reject(new Error('executor client is closed'));
    if (this.stream) return Promise.resolve();
    this.connecting ??= this.attach(opts.requireRunning ?? true).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /** Send one request and wait for its answer. Tool failures come back as `ok: false`, not as rejections. */
  async request(op: string, args: Record<string, unknown> = {}, opts: RequestOptions = {}): Promise<ExecutorResponse> {
    const id = opts.id ?? this.newRequestId();
    const line = `${JSON.stringify({ id, op, args, key: opts.key })}\n`;
    await this.connect();
    return new Promise<ExecutorResponse>((resolve, reject) => {
      const entry: Pending = { op, line, resolve, reject };
      if (opts.timeoutMs !== undefined) {
        const ms = opts.timeoutMs;
        entry.timer = setTimeout(() => this.settle(id, new ExecutorTimeoutError(id, op, ms)), ms);
      }
      this.pending.set(id, entry);
      this.updateRef();
      if (this.stream) this.stream.write(line);
      else this.reconnect();
    });
  }

  /** Ask the executor to kill the process group of request `target`. Best effort. */
  async cancel(target: string, timeoutMs = 5000): Promise<boolean> {
    const r = await this.request('cancel', { target }, { timeoutMs });
    return r.ok && r.result.cancelled === true;
  }

  /** Detach. Requests in flight are rejected; the executor and its work carry on. */
  close(): void {
    this.closed = true;
    for (const id of [...this.pending.keys()]) this.settle(id, new Error('executor client closed'));
    const stream = this.stream;
    this.stream = undefined;
    stream?.destroy?.();
  }

  private async attach(requireRunning: boolean): Promise<void> {
    const container = this.docker.getContainer(this.containerId);
    // The daemon accepts an attach to a stopped container and just waits, so check first.
    if (requireRunning) {
      let info: Docker.ContainerInspectInfo;
      try {
        info = await container.inspect();
      } catch (err) {
        if (statusOf(err) === 404) throw new ExecutorGoneError(this.containerId, 'no such container');
        throw err;
      }
      if (!info.State.Running) throw new ExecutorGoneError(this.containerId, `container is ${info.State.Status}`);
    }
    let stream: AttachStream;
    try {
      stream = (await container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true })) as AttachStream;
    } catch (err) {
      if (statusOf(err) === 404) throw new ExecutorGoneError(this.containerId, 'no such container');
      throw err;
    }
    if (this.closed) {
      stream.destroy?.();
      throw new Error('executor client is closed');
    }
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    this.docker.modem.demuxStream(stream, stdout, stderr);
    const decoder = new StringDecoder('utf8');
    // Snapshot transfers send lines of a few MB: look for newlines only in new data.
    let partial: string[] = [];
    let partialLength = 0;
    stdout.on('data', (chunk: Buffer) => {
      let text = decoder.write(chunk);
      let nl: number;
      while ((nl = text.indexOf('\n')) >= 0) {
        partial.push(text.slice(0, nl));
        const line = partial.join('');
        partial = [];
        partialLength = 0;
        text = text.slice(nl + 1);
        if (line.trim()) this.onLine(line);
      }
      if (text) {
        partial.push(text);
        partialLength += text.length;
      }
      // The executor's lines are bounded; an endless one is something in the sandbox writing
      // to the executor's stdout. Drop the sandbox rather than the worker's memory.
      if (partialLength > MAX_LINE_CHARS) {
        partial = [];
        partialLength = 0;
        this.poison(`the sandbox sent a line over ${MAX_LINE_CHARS} characters`);
      }
    });
    stderr.on('data', (chunk: Buffer) => this.log(`[${this.containerId.slice(0, 12)}] ${chunk.toString().trimEnd()}`));
    let down = false;
    const onDown = (why: string): void => {
      if (down) return;
      down = true;
      if (this.stream === stream) this.stream = undefined;
      if (!this.closed) this.log(`attach stream to ${this.containerId.slice(0, 12)} ended (${why})`);
      if (this.pending.size > 0) this.reconnect();
    };
    stream.on('end', () => onDown('end'));
    stream.on('close', () => onDown('close'));
    stream.on('error', (err: Error) => onDown(err.message));
    this.stream = stream;
    this.updateRef();
  }

  private onLine(line: string): void {
    let msg: ExecutorResponse;
    try {
      msg = JSON.parse(line) as ExecutorResponse;
    } catch {
      this.log(`unparseable executor line: ${line.slice(0, 200)}`);
      return;
    }
    // Another client attached to the same container sees our answers too, and we theirs.
    if (typeof msg.id === 'string' && this.pending.has(msg.id)) this.settle(msg.id, msg);
    else if (msg.id === null) this.log(`executor rejected a request: ${line.slice(0, 200)}`);
  }

  /** Give up on this container: fail everything in flight as gone and detach. */
  private poison(detail: string): void {
    this.log(`${this.containerId.slice(0, 12)}: ${detail}`);
    for (const id of [...this.pending.keys()]) this.settle(id, new ExecutorGoneError(this.containerId, detail));
    const stream = this.stream;
    this.stream = undefined;
    stream?.destroy?.();
  }

  private settle(id: string, outcome: ExecutorResponse | Error): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    this.pending.delete(id);
    if (entry.timer) clearTimeout(entry.timer);
    this.updateRef();
    if (outcome instanceof Error) entry.reject(outcome);
    else entry.resolve(outcome);
  }

  /** Re-attach and re-send everything in flight; give up on them if the container is gone. */
  private reconnect(): void {
    if (this.reconnecting || this.closed) return;
    this.reconnecting = true;
    void (async () => {
      let lastError: unknown;
      for (let attempt = 0; attempt < RECONNECT_ATTEMPTS && !this.closed; attempt++) {
        try {
          await this.connect();
          // A leading newline ends any half-written line the old stream left behind.
          for (const entry of this.pending.values()) this.stream?.write(`\n${entry.line}`);
          return;
        } catch (err) {
          lastError = err;
          if (err instanceof ExecutorGoneError) break;
          await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 5000)));
        }
      }
      const error = lastError instanceof Error ? lastError : new Error(String(lastError));
      for (const id of [...this.pending.keys()]) this.settle(id, error);
    })().finally(() => {
      this.reconnecting = false;
      // The new stream may have died while we were re-sending.
      if (!this.stream && this.pending.size > 0 && !this.closed) this.reconnect();
    });
  }

  /** Keep the process alive only while answers are awaited, so an idle client never blocks exit. */
  private updateRef(): void {
    if (this.pending.size > 0) this.stream?.ref?.();
    else this.stream?.unref?.();
  }
}
