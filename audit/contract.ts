/**
 * The runtime contract: what a session runs on (model settings, tools with the
 * hash of each schema, Keel's version, the sandbox's image, executor, limits and
 * network), recorded once per session in `session.contract`, and what differs
 * between a recorded contract and today's (`keel audit rerun`).
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../common/canonical-json';
import { KEEL_VERSION } from '../common/constants';
import { DEFAULT_MAX_OUTPUT_TOKENS } from '../common/defaults';
import type { EventRow } from '../common/events';
import { looksLikeMcpTool, type McpTool } from '../common/mcp';
import { toolJsonSchemas } from '../common/tools';
import type { ModelSpec, RuntimeContract, SandboxRuntimeInfo } from '../common/types';

/** The model side of the contract: settings and every tool offered, each with the sha256 of its JSON Schema. */
export function modelContract(model: ModelSpec, mcpTools: readonly McpTool[] = []): Omit<RuntimeContract, 'sandbox' | 'workerBuildId'> {
  const sha = (description: string, parameters: unknown) => createHash('sha256').update(canonicalJson({ description, parameters })).digest('hex');
  const tools = [
    ...Object.entries(toolJsonSchemas()).map(([name, t]) => ({ name, schemaSha: sha(t.description, t.parameters) })),
    // MCP tools as their servers listed them when the session started (`<server>__<tool>`).
    ...mcpTools.map((t) => ({ name: t.name, schemaSha: sha(t.description, t.inputSchema) })),
  ];
  return {
    model: {
      provider: model.provider,
      model: model.model,
      maxOutputTokens: model.maxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS,
      ...(model.contextTokens !== undefined ? { contextTokens: model.contextTokens } : {}),
      ...(model.baseURL ? { baseURL: model.baseURL } : {}),
    },
    tools,
    keelVersion: KEEL_VERSION,
  };
}

/** One field that differs between the recorded contract and today's. */
export interface ContractDifference {
  field: string;
  recorded: string;
  today: string;
}

/** The session's recorded contract, if it has one (sessions from before contracts do not). */
export function recordedContract(events: readonly EventRow[]): RuntimeContract | undefined {
  const e = events.find((x) => x.type === 'session.contract');
  return e?.type === 'session.contract' ? e.data : undefined;
}

const show = (v: unknown): string => (v === undefined ? '(none)' : typeof v === 'string' ? v : JSON.stringify(v));

/**
 * What differs between a recorded contract and today's: model settings, tools (added, removed,
 * changed schema; a session's MCP tools only when today's side lists MCP tools too), Keel's version, and, when today's sandbox is known, image, executor, limits, network.
 */
export function contractDifferences(recorded: RuntimeContract, today: { model: Omit<RuntimeContract, 'sandbox' | 'workerBuildId'>; sandbox?: SandboxRuntimeInfo & { image: string } }): ContractDifference[] {
  const out: ContractDifference[] = [];
  const diff = (field: string, a: unknown, b: unknown) => {
    if (canonicalJson(a ?? null) !== canonicalJson(b ?? null)) out.push({ field, recorded: show(a), today: show(b) });
  };
  for (const k of ['provider', 'model', 'maxOutputTokens', 'contextTokens', 'baseURL'] as const) diff(`model.${k}`, recorded.model[k], today.model.model[k]);
  const before = new Map(recorded.tools.map((t) => [t.name, t.schemaSha]));
  const now = new Map(today.model.tools.map((t) => [t.name, t.schemaSha]));
  for (const [name, sha] of before) {
    // MCP tools (`<server>__<tool>`) come from servers beside a worker; today's side lists them only when it asked them.
    if (!now.has(name) && looksLikeMcpTool(name) && !today.model.tools.some((t) => looksLikeMcpTool(t.name))) continue;
    if (!now.has(name)) out.push({ field: `tool ${name}`, recorded: `schema ${sha.slice(0, 12)}`, today: '(removed)' });
    else if (now.get(name) !== sha) out.push({ field: `tool ${name}`, recorded: `schema ${sha.slice(0, 12)}`, today: `schema ${now.get(name)!.slice(0, 12)}` });
  }
  for (const [name, sha] of now) if (!before.has(name)) out.push({ field: `tool ${name}`, recorded: '(absent)', today: `schema ${sha.slice(0, 12)}` });
  diff('keelVersion', recorded.keelVersion, today.model.keelVersion);
  if (today.sandbox && recorded.sandbox) {
    const r = recorded.sandbox;
    const t = today.sandbox;
    diff('sandbox.image', r.image, t.image);
    diff('sandbox.imageId', r.imageId, t.imageId);
    diff('sandbox.executor', r.executor, t.executor);
    diff('sandbox.limits', r.limits, t.limits);
    diff('sandbox.network', r.network, t.network);
  }
  return out;
}
