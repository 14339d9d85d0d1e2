/**
 * MCP servers inside the sandbox, host side: the official MCP client (`@modelcontextprotocol/sdk`) talks
 * to a server the executor runs in the container (sandbox/keel_executor/mcp_servers.py), through a
 * Transport that carries its JSON-RPC messages in the executor's `mcp` op. The executor owns the
 * server's process and its handshake (it starts it again after a restore or a kill without us), so
 * this transport answers the client's `initialize` with the result the executor got, and sends every
 * other request with the notifications queued before it, waiting for its answer.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { KEEL_VERSION } from '../../common/constants';
import { DEFAULT_SANDBOX_MCP_TIMEOUT_SEC, mcpToolName, SANDBOX_MCP_START_TIMEOUT_SEC, type McpTool, type SandboxMcpServer } from '../../common/mcp';
import type { ExecutorClient } from '../../host/executor-client';
import { errorText, PROVIDER_TOOL_NAME, resultText } from '../mcp';

/** The executor's answer for the server: did not start, timed out, exited (its code and message are for the model). */
export class SandboxMcpError extends Error {
  override name = 'SandboxMcpError';
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** Slack over the executor's own timeouts before the client gives up on it. */
const TRANSPORT_SLACK_MS = 30_000;

/** The executor's `mcp` op as an MCP transport (see the module comment). */
export class ExecutorMcpTransport implements Transport {
  onmessage?: (message: JSONRPCMessage) => void;
  onclose?: () => void;
  onerror?: (error: Error) => void;
  /** A failure of the executor itself (the container is gone, no answer): the activity's, not the model's. */
  infraError?: unknown;
  /** Whether the executor (re)started the server for this client. */
  started = false;
  private init?: Record<string, unknown>;
  private notes: JSONRPCMessage[] = [];

  constructor(
    private readonly executor: ExecutorClient,
    private readonly name: string,
    private readonly server: SandboxMcpServer,
    /** The idempotency key of a `tools/call` (the activity's), so a retried activity never calls twice. */
    private readonly callKey?: string,
  ) {}

  async start(): Promise<void> {}

  async close(): Promise<void> {
    this.onclose?.();
  }

  async send(message: JSONRPCMessage): Promise<void> {
    if (!('method' in message)) return; // answers to requests of the server's: the executor answers those itself
    if (!('id' in message) || message.id === undefined) {
      if (message.method !== 'notifications/initialized') this.notes.push(message); // the executor did the handshake
      return;
    }
    if (message.method === 'initialize') {
      this.init = (message.params ?? {}) as Record<string, unknown>;
      const r = await this.exchange([], [], undefined);
      this.onmessage?.({ jsonrpc: '2.0', id: message.id, result: r.initialize as Record<string, unknown> } as JSONRPCMessage);
      return;
    }
    const messages = [...this.notes.splice(0), message];
    const r = await this.exchange(messages, [message.id], message.method === 'tools/call' ? this.callKey : undefined);
    for (const m of (Array.isArray(r.messages) ? r.messages : []) as JSONRPCMessage[]) this.onmessage?.(m);
  }

  private async exchange(messages: JSONRPCMessage[], wait: Array<string | number>, key: string | undefined): Promise<Record<string, unknown>> {
    const timeoutSec = this.server.timeoutSec ?? DEFAULT_SANDBOX_MCP_TIMEOUT_SEC;
    const args = {
      server: { name: this.name, command: this.server.command, args: this.server.args ?? [], env: this.server.env ?? {} },
      init: this.init ?? {},
      messages,
      wait,
      timeoutSec,
      startTimeoutSec: SANDBOX_MCP_START_TIMEOUT_SEC,
    };
    let response;
    try {
      response = await this.executor.request('mcp', args, { ...(key ? { key } : {}), timeoutMs: (timeoutSec + SANDBOX_MCP_START_TIMEOUT_SEC) * 1000 + TRANSPORT_SLACK_MS });
    } catch (err) {
      this.infraError = err;
      throw err;
    }
    if (!response.ok) throw new SandboxMcpError(response.error.code, response.error.message);
    if (response.result.started === true) this.started = true;
    return response.result;
  }
}

/** A connected MCP client for server `name` of the sandbox. */
async function connect(executor: ExecutorClient, name: string, server: SandboxMcpServer, callKey?: string): Promise<{ client: Client; transport: ExecutorMcpTransport }> {
  const transport = new ExecutorMcpTransport(executor, name, server, callKey);
  const client = new Client({ name: 'keel', version: KEEL_VERSION });
  const timeout = (SANDBOX_MCP_START_TIMEOUT_SEC * 1000) + TRANSPORT_SLACK_MS * 2;
  await client.connect(transport, { timeout });
  return { client, transport };
}

/** The tools of the sandbox's servers, as the model will see them. Throws SandboxMcpError when a server does not start or list. */
export async function listSandboxTools(executor: ExecutorClient, servers: Record<string, SandboxMcpServer>): Promise<{ tools: McpTool[]; skipped: string[] }> {
  const tools: McpTool[] = [];
  const skipped: string[] = [];
  for (const [server, spec] of Object.entries(servers)) {
    let transport: ExecutorMcpTransport | undefined;
    try {
      const c = await connect(executor, server, spec);
      transport = c.transport;
      const listed: Array<{ name: string; description?: string; inputSchema: unknown }> = [];
      for (let cursor: string | undefined, pages = 0; pages < 20; pages++) {
        const page = await c.client.listTools(cursor ? { cursor } : undefined, { timeout: (spec.timeoutSec ?? DEFAULT_SANDBOX_MCP_TIMEOUT_SEC) * 1000 + TRANSPORT_SLACK_MS * 2 });
        listed.push(...page.tools);
        cursor = page.nextCursor;
        if (!cursor) break;
      }
      await c.client.close();
      for (const t of listed) {
        const name = mcpToolName(server, t.name);
        if (!PROVIDER_TOOL_NAME.test(name)) {
          skipped.push(`${name}: model providers accept only letters, digits, _ and - (at most 64)`);
          continue;
        }
        tools.push({ server, tool: t.name, name, description: t.description ?? '', inputSchema: t.inputSchema as Record<string, unknown>, sandbox: true });
      }
    } catch (err) {
      if (transport?.infraError) throw transport.infraError;
      if (err instanceof SandboxMcpError) throw err;
      throw new SandboxMcpError('McpError', `MCP server "${server}" of the sandbox did not list its tools: ${errorText(err)}`);
    }
  }
  return { tools, skipped };
}

/**
 * One call of a sandbox MCP tool (its arguments already checked). The server's failures are error results;
 * a failure of the executor itself (the container is gone) is thrown, for the activity to classify.
 */
export async function callSandboxTool(
  executor: ExecutorClient,
  call: { id: string; name: string },
  tool: McpTool,
  server: SandboxMcpServer,
  input: unknown,
  key: string,
): Promise<{ ok: boolean; error?: string; output: string; restarted: boolean }> {
  const transport = new ExecutorMcpTransport(executor, tool.server, server, key);
  const client = new Client({ name: 'keel', version: KEEL_VERSION });
  const timeoutMs = (server.timeoutSec ?? DEFAULT_SANDBOX_MCP_TIMEOUT_SEC) * 1000 + TRANSPORT_SLACK_MS * 2;
  try {
    await client.connect(transport, { timeout: timeoutMs });
    const result: Record<string, unknown> = await client.callTool(
      { name: tool.tool, arguments: input as Record<string, unknown>, _meta: { 'keel/idempotencyKey': call.id } },
      undefined,
      { timeout: timeoutMs },
    );
    const text = resultText(result) || '(no output)';
    return { ok: result.isError !== true, ...(result.isError ? { error: 'ToolError' } : {}), output: text, restarted: transport.started };
  } catch (err) {
    if (transport.infraError) throw transport.infraError;
    if (err instanceof SandboxMcpError) return { ok: false, error: err.code, output: err.message, restarted: transport.started };
    if (/request timed out/i.test(errorText(err))) {
      return { ok: false, error: 'Timeout', output: `MCP server "${tool.server}" of the sandbox: no answer from the executor within ${timeoutMs / 1000} s`, restarted: transport.started };
    }
    return {
      ok: false,
      error: 'McpError',
      output: `MCP server "${tool.server}" of the sandbox failed or returned a malformed result: ${errorText(err)}`,
      restarted: transport.started,
    };
  } finally {
    await client.close().catch(() => undefined);
  }
}
