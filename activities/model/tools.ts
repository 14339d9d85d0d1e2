import { jsonSchema, tool, type ToolSet } from 'ai';
import type { JSONSchema7 } from '@ai-sdk/provider';
import type { McpTool } from '../../common/mcp';
import { toolJsonSchemas } from '../../common/tools';

let cached: ToolSet | undefined;

/**
 * Keel's tools as an AI SDK tool set, WITHOUT `execute`: generateText only
 * reports the calls, and the workflow validates (with the zod schemas) and
 * runs them. No `validate` either, for the same reason: schema checking
 * happens once, in the workflow, where it turns into an error result.
 */
export function modelTools(): ToolSet {
  if (cached) return cached;
  const out: ToolSet = {};
  for (const [name, t] of Object.entries(toolJsonSchemas())) {
    // `$schema` is noise to providers (and some reject unknown keywords).
    const { $schema: _ignored, ...parameters } = t.parameters;
    out[name] = tool({ description: t.description, inputSchema: jsonSchema(parameters as JSONSchema7) });
  }
  cached = out;
  return out;
}

/** The built-in tools and a session's MCP tools (`<server>__<tool>`, each with its server's JSON Schema). */
export function sessionTools(mcpTools: readonly McpTool[] | undefined): ToolSet {
  if (!mcpTools?.length) return modelTools();
  const out: ToolSet = { ...modelTools() };
  for (const t of mcpTools) {
    const { $schema: _ignored, ...parameters } = t.inputSchema;
    out[t.name] = tool({ description: t.description, inputSchema: jsonSchema(parameters as JSONSchema7) });
  }
  return out;
}
