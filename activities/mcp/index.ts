/**
 * MCP servers beside the session worker: one stdio process per configured server per worker,
 * started on first use and restarted on the next use after it exits or hangs. The session workflow
 * lists a session's servers' tools once (`listMcpTools`, its result in history) and runs each call
 * as an activity (`callMcpTool`): arguments checked against the tool's JSON Schema first, and
 * every failure of the server (crash, timeout, malformed answer) an error result for the model.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import Ajv, { type ValidateFunction } from 'ajv';
import { classifyBlobError, ContentCache, fitsInline, preview, putContent, type BlobStore } from '../../blobs';
import type { McpActivities } from '../../common/activities';
import { KEEL_VERSION } from '../../common/constants';
import { failure, McpFailure } from '../../common/failures';
import { mcpToolName, type McpTool } from '../../common/mcp';
import type { ToolCall, ToolResult } from '../../common/types';
import type { McpConfig } from './config';

export { resolveMcpConfig, parseMcpConfig, type McpConfig } from './config';

/** Tool names model providers accept. */
export const PROVIDER_TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const STDERR_TAIL = 2000;

interface Connection {
  client: Client;
  /** Reached over streamable HTTP (not a process of this worker's). */
  http: boolean;
}

/** The worker's MCP servers. */
export class McpPool {
  private readonly conns = new Map<string, Promise<Connection>>();
  private readonly stderr = new Map<string, string>();

  constructor(readonly config: McpConfig) {}

  /** The running server `name`, started if it is not. */
  connect(name: string): Promise<Connection> {
    const server = this.config.servers[name];
    if (!server) {
      const known = Object.keys(this.config.servers);
      throw failure(
        McpFailure.NotConfigured,
        `MCP server "${name}" is not configured on this worker (${known.length ? `configured: ${known.join(', ')}` : 'none configured'}); ` +
          `add it under "mcpServers" in the file KEEL_MCP_CONFIG names${this.config.source && this.config.source !== '(unset)' ? ` (${this.config.source})` : ''} and restart the worker`,
      );
    }
    const existing = this.conns.get(name);
    if (existing) return existing;
    const started = this.start(name, server);
    this.conns.set(name, started);
    started.catch(() => {
      if (this.conns.get(name) === started) this.conns.delete(name);
    });
    return started;
  }

  private start(name: string, server: McpConfig['servers'][string]): Promise<Connection> {
    this.stderr.set(name, '');
    let transport: StdioClientTransport | StreamableHTTPClientTransport;
    if ('url' in server) {
      transport = new StreamableHTTPClientTransport(new URL(server.url), { requestInit: { headers: server.headers } });
    } else {
      const stdio = new StdioClientTransport({
        command: server.command,
        args: server.args,
        // Only the basic variables (PATH, HOME, ...) and the server's own: the worker's secrets stay with the worker.
        env: { ...getDefaultEnvironment(), ...server.env },
        ...(server.cwd ? { cwd: server.cwd } : {}),
        stderr: 'pipe',
      });
      stdio.stderr?.on('data', (chunk: Buffer) => {
        this.stderr.set(name, ((this.stderr.get(name) ?? '') + chunk.toString('utf8')).slice(-STDERR_TAIL));
      });
      transport = stdio;
    }
    const client = new Client({ name: 'keel', version: KEEL_VERSION });
    const conn: Connection = { client, http: 'url' in server };
    client.onclose = () => {
      // The process exited (or was stopped): the next use starts a new one.
      if (this.conns.get(name) === connecting) this.conns.delete(name);
    };
    const connecting: Promise<Connection> = (async () => {
      try {
        await client.connect(transport, { timeout: this.config.startTimeoutMs });
        return conn;
      } catch (err) {
        await client.close().catch(() => undefined);
        const where = this.config.source ? ` (${this.config.source})` : '';
        if ('url' in server) {
          // Origin and path only: a query string may carry a token.
          const u = new URL(server.url);
          throw failure(
            McpFailure.Unavailable,
            `MCP server "${name}" did not answer at ${u.origin}${u.pathname}: ${errorText(err)}. Check that it runs and its "url" and "headers" in KEEL_MCP_CONFIG${where}`,
          );
        }
        // The command without its args (they may carry a token).
        const tail = this.stderrOf(name);
        throw failure(
          McpFailure.Unavailable,
          `MCP server "${name}" did not start (${server.command}): ${errorText(err)}${tail ? `; its stderr: ${tail}` : ''}. ` +
            `Check its "command" and "args" in KEEL_MCP_CONFIG${where} (run the command by hand to see it start)`,
        );
      }
    })();
    return connecting;
  }

  /** The last lines the server wrote to stderr, for error messages. */
  stderrOf(name: string): string {
    return (this.stderr.get(name) ?? '').trim().slice(-500);
  }

  /** Stop server `name` (it is started again on next use). */
  async restart(name: string): Promise<void> {
    const c = this.conns.get(name);
    this.conns.delete(name);
    if (c) await c.then((x) => x.client.close()).catch(() => undefined);
  }

  async close(): Promise<void> {
    await Promise.all([...this.conns.keys()].map((n) => this.restart(n)));
  }
}

/** What a tool's result says, as text for the model: text parts, and a note for each other part. */
export function resultText(result: Record<string, unknown>): string {
  const parts: string[] = [];
  for (const c of (Array.isArray(result.content) ? result.content : []) as Array<Record<string, unknown>>) {
    if (c.type === 'text') parts.push(String(c.text));
    else if (c.type === 'image' || c.type === 'audio') parts.push(`[${c.type} ${String(c.mimeType)}, ${String(c.data ?? '').length} base64 characters; not shown]`);
    else if (c.type === 'resource') {
      const r = c.resource as Record<string, unknown>;
      parts.push(typeof r?.text === 'string' ? r.text : `[resource ${String(r?.uri)}]`);
    } else if (c.type === 'resource_link') parts.push(`[resource ${String(c.uri)}]`);
    else parts.push(JSON.stringify(c));
  }
  if (parts.length === 0 && result.structuredContent !== undefined) parts.push(JSON.stringify(result.structuredContent));
  // Servers of protocol version 2024-10-07 answer `toolResult` instead of `content`.
  if (parts.length === 0 && result.toolResult !== undefined) parts.push(typeof result.toolResult === 'string' ? result.toolResult : JSON.stringify(result.toolResult));
  return parts.join('\n');
}

export function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').slice(0, 1000);
}

/**
 * Checks a call's arguments against its tool's JSON Schema (Ajv, compiled schemas cached): an
 * `InvalidArguments` result when they do not fit, undefined when they do (or Ajv cannot compile the schema:
 * then the server checks its own arguments).
 */
export function argumentChecker(): (call: ToolCall, tool: McpTool, input: unknown) => ToolResult | undefined {
  const ajv = new Ajv({ strict: false, allErrors: true });
  const validators = new Map<string, ValidateFunction | null>();
  const validatorFor = (tool: McpTool): ValidateFunction | null => {
    const key = JSON.stringify(tool.inputSchema);
    let v = validators.get(key);
    if (v === undefined) {
      const { $schema: _ignored, ...schema } = tool.inputSchema;
      try {
        v = ajv.compile(schema);
      } catch {
        v = null;
      }
      if (validators.size >= 500) validators.delete(validators.keys().next().value as string);
      validators.set(key, v);
    }
    return v;
  };
  return (call, tool, input) => {
    const validate = validatorFor(tool);
    if (!validate || validate(input)) return undefined;
    const issues = (validate.errors ?? []).map((e) => `${e.instancePath || '(arguments)'} ${e.message ?? 'is invalid'}`).join('; ');
    return { callId: call.id, name: call.name, ok: false, error: 'InvalidArguments', output: `Invalid arguments for ${call.name}: ${issues}` };
  };
}

/** At most this many calls' outcomes are remembered per worker, so a retried activity does not call its server twice. */
const REMEMBERED_CALLS = 1000;

export function createMcpActivities(deps: { pool: McpPool; blobs: BlobStore }) {
  const { pool, blobs } = deps;
  const checkArguments = argumentChecker();
  const calls = new Map<string, Promise<ToolResult>>();
  const cache = new ContentCache(8 * 1024 * 1024);

  async function run(call: ToolCall, tool: McpTool): Promise<ToolResult> {
    const base = { callId: call.id, name: call.name };
    const input: unknown = call.inputRef ? JSON.parse(await cache.text(blobs, call.inputRef)) : call.input;
    const invalid = checkArguments(call, tool, input);
    if (invalid) return invalid;
    let conn: Connection;
    try {
      conn = await pool.connect(tool.server);
    } catch (err) {
      return { ...base, ok: false, error: 'McpUnavailable', output: errorText(err) };
    }
    try {
      const result: Record<string, unknown> = await conn.client.callTool(
        { name: tool.tool, arguments: input as Record<string, unknown>, _meta: { 'keel/idempotencyKey': call.id } },
        undefined,
        { timeout: pool.config.callTimeoutMs },
      );
      const text = resultText(result) || '(no output)';
      const output = fitsInline(text) ? text : preview(text);
      const outputRef = fitsInline(text) ? undefined : await putContent(blobs, text);
      return { ...base, ok: result.isError !== true, ...(result.isError ? { error: 'ToolError' } : {}), output, ...(outputRef ? { outputRef } : {}) };
    } catch (err) {
      const blob = classifyBlobError(err);
      if (blob) throw blob;
      const message = errorText(err);
      const timedOut = /timed out|timeout/i.test(message);
      // A hung server is stopped (the next call starts it again); an exited one is already gone;
      // an HTTP server's connection is made again (it may have restarted and forgotten its session).
      if (timedOut || conn.http) await pool.restart(tool.server);
      const tail = pool.stderrOf(tool.server);
      const what = timedOut
        ? `did not answer within ${pool.config.callTimeoutMs / 1000} s; it was stopped and starts again on the next call`
        : /closed|exited|EPIPE/i.test(message)
          ? `exited during the call (${message}); it starts again on the next call`
          : `failed or returned a malformed result: ${message}`;
      return { ...base, ok: false, error: timedOut ? 'Timeout' : 'McpError', output: `MCP server "${tool.server}" ${what}${tail && !timedOut ? `. Its stderr: ${tail}` : ''}` };
    }
  }

  return {
    /**
     * The tools of the named servers, as the model will see them (`<server>__<tool>`), starting the servers if needed.
     * @throws ApplicationFailure `Mcp.NotConfigured` (not retried), `Mcp.Unavailable` (retried a few times).
     */
    async listMcpTools({ servers }: { servers: string[] }): Promise<{ tools: McpTool[]; skipped: string[] }> {
      const tools: McpTool[] = [];
      const skipped: string[] = [];
      for (const server of servers) {
        const conn = await pool.connect(server);
        let listed: Awaited<ReturnType<Client['listTools']>>['tools'] = [];
        try {
          for (let cursor: string | undefined, pages = 0; pages < 20; pages++) {
            const page = await conn.client.listTools(cursor ? { cursor } : undefined, { timeout: pool.config.startTimeoutMs });
            listed = listed.concat(page.tools);
            cursor = page.nextCursor;
            if (!cursor) break;
          }
        } catch (err) {
          await pool.restart(server);
          throw failure(McpFailure.Unavailable, `MCP server "${server}" did not list its tools: ${errorText(err)}`);
        }
        for (const t of listed) {
          const name = mcpToolName(server, t.name);
          if (!PROVIDER_TOOL_NAME.test(name)) {
            skipped.push(`${name}: model providers accept only letters, digits, _ and - (at most 64)`);
            continue;
          }
          tools.push({ server, tool: t.name, name, description: t.description ?? '', inputSchema: t.inputSchema as Record<string, unknown> });
        }
      }
      return { tools, skipped };
    },

    /**
     * One call of an MCP tool: arguments checked against its schema, then sent to its server. Never throws for
     * the server's failures (crash, timeout, malformed result): they are error results for the model.
     * A retry on this worker returns the first attempt's outcome (the call id is the key).
     */
    async callMcpTool({ call, tool }: { sessionId: string; call: ToolCall; tool: McpTool }): Promise<ToolResult> {
      const known = calls.get(call.id);
      if (known) return known;
      const p = run(call, tool);
      calls.set(call.id, p);
      p.catch(() => calls.delete(call.id));
      if (calls.size > REMEMBERED_CALLS) calls.delete(calls.keys().next().value as string);
      return p;
    },
  } satisfies McpActivities;
}
