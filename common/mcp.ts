/**
 * MCP tools: tools of Model Context Protocol servers that run beside the session worker,
 * configured by the operator (activities/mcp) and named by a session (`SessionSpec.mcp`).
 * The model sees them as `<server>__<tool>`. Pure code: safe to import from workflows.
 */

/** Separates a server's name from its tool's in the name the model sees. Built-in tool names never contain it. */
export const MCP_SEPARATOR = '__';

/** One tool of one MCP server, as listed by the server (tools/list) when the session started. */
export interface McpTool {
  /** The server's name in the operator's configuration. */
  server: string;
  /** The tool's name on its server. */
  tool: string;
  /** The name the model sees: `<server>__<tool>`. */
  name: string;
  description: string;
  /** The tool's input JSON Schema, as the server gave it. */
  inputSchema: Record<string, unknown>;
  /** The server runs inside the session's sandbox (`SessionSpec.mcpSandbox`), not beside the worker. */
  sandbox?: true;
}

/**
 * A stdio MCP server the session runs inside its own sandbox (`SessionSpec.mcpSandbox`): started by the
 * executor as the commands' user (uid 1000) in /workspace, so it is trusted only as far as the sandbox is.
 * The whole spec is in workflow history and events: `env` must hold no secrets.
 */
export interface SandboxMcpServer {
  /** The program, found on the image's PATH or given as an absolute path. */
  command: string;
  args?: string[];
  /** Added to the container's basic environment (PATH, HOME, LANG, ...). No secrets: it is recorded. */
  env?: Record<string, string>;
  /** The most a call may take; then the call is a `Timeout` result and the server is stopped. @default 60, at most 240 */
  timeoutSec?: number;
}

/** The most sandbox MCP servers one session may name. */
export const MAX_SANDBOX_MCP_SERVERS = 8;
export const DEFAULT_SANDBOX_MCP_TIMEOUT_SEC = 60;
export const MAX_SANDBOX_MCP_TIMEOUT_SEC = 240;
/** The time a sandbox MCP server gets to start and answer initialize. */
export const SANDBOX_MCP_START_TIMEOUT_SEC = 30;
/** Variable names that look like credentials: refused in a sandbox server's `env`, which is recorded. */
const SECRET_NAME = /(KEY|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL|AUTH)/i;

/** What is wrong with `SessionSpec.mcpSandbox` (and its names against `SessionSpec.mcp`); empty when it is fine. */
export function sandboxMcpProblems(servers: unknown, operatorServers: readonly string[] = []): string[] {
  if (servers === undefined) return [];
  if (typeof servers !== 'object' || servers === null || Array.isArray(servers)) return ['mcpSandbox must be an object: {"<name>": {"command": "...", "args": [...]}}'];
  const problems: string[] = [];
  const entries = Object.entries(servers as Record<string, unknown>);
  if (entries.length > MAX_SANDBOX_MCP_SERVERS) problems.push(`mcpSandbox names ${entries.length} servers; at most ${MAX_SANDBOX_MCP_SERVERS}`);
  for (const [name, v] of entries) {
    const where = `mcpSandbox.${name}`;
    if (!MCP_SERVER_NAME.test(name)) problems.push(`${where}: a name is 1-32 letters, digits or dashes, starting with a letter or digit (no "__": tools are offered as <server>__<tool>)`);
    if (operatorServers.includes(name)) problems.push(`${where}: "${name}" is also in mcp (the operator's servers); give the sandbox server another name`);
    const s = v as Partial<Record<keyof SandboxMcpServer, unknown>> | null;
    if (!s || typeof s !== 'object' || Array.isArray(s)) {
      problems.push(`${where}: expected {"command": "...", "args": [...], "env": {...}}`);
      continue;
    }
    for (const k of Object.keys(s)) if (!['command', 'args', 'env', 'timeoutSec'].includes(k)) problems.push(`${where}.${k} is not a field (command, args, env, timeoutSec)`);
    if (typeof s.command !== 'string' || !s.command.trim()) problems.push(`${where}.command must be a non-empty string`);
    if (s.args !== undefined && (!Array.isArray(s.args) || s.args.some((a) => typeof a !== 'string'))) problems.push(`${where}.args must be an array of strings`);
    if (s.env !== undefined) {
      if (typeof s.env !== 'object' || s.env === null || Array.isArray(s.env) || Object.values(s.env).some((x) => typeof x !== 'string')) {
        problems.push(`${where}.env must be an object of string values`);
      } else {
        for (const k of Object.keys(s.env)) {
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) problems.push(`${where}.env: "${k}" is not a variable name`);
          else if (SECRET_NAME.test(k)) {
            problems.push(`${where}.env.${k} looks like a credential: a sandbox server's env is recorded in the session's history and events, and the sandbox's commands can read it; give secrets to an operator server (KEEL_MCP_CONFIG, --mcp) instead`);
          }
        }
      }
    }
    if (s.timeoutSec !== undefined && !(typeof s.timeoutSec === 'number' && Number.isInteger(s.timeoutSec) && s.timeoutSec >= 1 && s.timeoutSec <= MAX_SANDBOX_MCP_TIMEOUT_SEC)) {
      problems.push(`${where}.timeoutSec must be an integer from 1 to ${MAX_SANDBOX_MCP_TIMEOUT_SEC}`);
    }
  }
  return problems;
}

/** A server name an operator may configure: it must not contain the separator, so names split one way. */
export const MCP_SERVER_NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,31}$/;

/** The name the model sees for `tool` of `server`. */
export function mcpToolName(server: string, tool: string): string {
  return `${server}${MCP_SEPARATOR}${tool}`;
}

/** Whether a tool name has the shape of an MCP tool's (`<server>__<tool>`); built-in names never do. */
export function looksLikeMcpTool(name: string): boolean {
  return name.includes(MCP_SEPARATOR);
}
