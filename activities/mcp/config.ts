/**
 * The operator's MCP servers: a JSON file named by KEEL_MCP_CONFIG, in the shape other MCP
 * clients use: `{"mcpServers": {"<name>": {"command": "...", "args": [...], "env": {...}, "cwd": "..."}}}`
 * for a server the worker starts (stdio), or `{"url": "https://...", "headers": {...}}` for one it
 * reaches over streamable HTTP. `env` and `headers` may hold credentials: they go to that server only
 * (never into a spec, an event, workflow history or a sandbox).
 */
import { readFileSync } from 'node:fs';
import { MCP_SERVER_NAME } from '../../common/mcp';

export interface McpStdioServer {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
}

export interface McpHttpServer {
  url: string;
  headers: Record<string, string>;
}

export type McpServerConfig = McpStdioServer | McpHttpServer;

export interface McpConfig {
  servers: Record<string, McpServerConfig>;
  /** The most a tool call may take before its server is deemed hung (the call gets an error result, the server is restarted). */
  callTimeoutMs: number;
  /** The most a server may take to start and answer initialize and tools/list. */
  startTimeoutMs: number;
  /** Where the configuration came from, for error messages. */
  source?: string;
}

/** The workflow's activity timeout for a call is 5 minutes: a call's own timeout stays below it. */
export const MAX_MCP_CALL_TIMEOUT_SEC = 240;
export const DEFAULT_MCP_CALL_TIMEOUT_SEC = 60;
export const DEFAULT_MCP_START_TIMEOUT_SEC = 30;

/** Parse a configuration's JSON text; every problem names the file and the server. */
export function parseMcpConfig(text: string, source: string, timeouts: { callTimeoutSec?: number; startTimeoutSec?: number } = {}): McpConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`KEEL_MCP_CONFIG ${source}: not JSON (${(err as Error).message})`);
  }
  const root = raw as { mcpServers?: unknown };
  if (!root || typeof root !== 'object' || !root.mcpServers || typeof root.mcpServers !== 'object' || Array.isArray(root.mcpServers)) {
    throw new Error(`KEEL_MCP_CONFIG ${source}: expected {"mcpServers": {"<name>": {"command": "...", "args": [...]}}}`);
  }
  const servers: Record<string, McpServerConfig> = {};
  const strings = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
  for (const [name, v] of Object.entries(root.mcpServers as Record<string, unknown>)) {
    const where = `KEEL_MCP_CONFIG ${source}: server "${name}"`;
    if (!MCP_SERVER_NAME.test(name)) throw new Error(`${where}: a name is 1-32 letters, digits or dashes, starting with a letter or digit (no "__": tools are offered as <server>__<tool>)`);
    const s = v as { command?: unknown; args?: unknown; env?: unknown; cwd?: unknown; url?: unknown; headers?: unknown };
    if (!s || typeof s !== 'object') throw new Error(`${where}: expected an object with "command" (stdio) or "url" (streamable HTTP)`);
    if (s.url !== undefined) {
      if (s.command !== undefined) throw new Error(`${where}: give "command" (stdio) or "url" (streamable HTTP), not both`);
      let url: URL;
      try {
        url = new URL(String(s.url));
      } catch {
        throw new Error(`${where}: "url" is not a URL`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${where}: "url" must be http:// or https://`);
      if (s.headers !== undefined && !strings(s.headers)) throw new Error(`${where}: "headers" must be an object of string values`);
      servers[name] = { url: url.href, headers: (s.headers as Record<string, string> | undefined) ?? {} };
      continue;
    }
    if (typeof s.command !== 'string' || !s.command) throw new Error(`${where}: "command" must be a non-empty string`);
    if (s.args !== undefined && (!Array.isArray(s.args) || s.args.some((a) => typeof a !== 'string'))) throw new Error(`${where}: "args" must be an array of strings`);
    if (s.env !== undefined && !strings(s.env)) {
      throw new Error(`${where}: "env" must be an object of string values`);
    }
    if (s.cwd !== undefined && typeof s.cwd !== 'string') throw new Error(`${where}: "cwd" must be a string`);
    servers[name] = {
      command: s.command,
      args: (s.args as string[] | undefined) ?? [],
      env: (s.env as Record<string, string> | undefined) ?? {},
      ...(s.cwd ? { cwd: s.cwd } : {}),
    };
  }
  const callSec = timeouts.callTimeoutSec ?? DEFAULT_MCP_CALL_TIMEOUT_SEC;
  if (!(callSec > 0 && callSec <= MAX_MCP_CALL_TIMEOUT_SEC)) throw new Error(`KEEL_MCP_CALL_TIMEOUT_SEC must be between 1 and ${MAX_MCP_CALL_TIMEOUT_SEC}`);
  const startSec = timeouts.startTimeoutSec ?? DEFAULT_MCP_START_TIMEOUT_SEC;
  if (!(startSec > 0 && startSec <= 120)) throw new Error('KEEL_MCP_START_TIMEOUT_SEC must be between 1 and 120');
  return { servers, callTimeoutMs: callSec * 1000, startTimeoutMs: startSec * 1000, source };
}

/** The configuration named by KEEL_MCP_CONFIG, or none (no MCP servers) when it is unset. */
export function resolveMcpConfig(env: NodeJS.ProcessEnv): McpConfig {
  const secs = (name: string) => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new Error(`${name} must be a number of seconds, got "${v}"`);
    return n;
  };
  const timeouts = { callTimeoutSec: secs('KEEL_MCP_CALL_TIMEOUT_SEC'), startTimeoutSec: secs('KEEL_MCP_START_TIMEOUT_SEC') };
  const path = env.KEEL_MCP_CONFIG;
  if (!path) return parseMcpConfig('{"mcpServers": {}}', '(unset)', timeouts);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`KEEL_MCP_CONFIG ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseMcpConfig(text, path, timeouts);
}
