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
