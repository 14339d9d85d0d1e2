/**
 * Deliberate tool faults (`SessionSpec.inject`): whether a call is hit is decided
 * by a seeded hash of the seed, the tool and the call's place in the session, so
 * the same seed hits the same calls on every run, replay and re-run. An injected
 * fault never reaches the sandbox: its result is made here. Pure code.
 */
import type { FaultInjection, ToolResult } from './types';

export type Fault = FaultInjection['rules'][number]['fault'];

/** A uniform number in [0, 1) from the inputs (FNV-1a, then a xorshift mix): deterministic, no randomness. */
export function unitHash(...parts: Array<string | number>): number {
  let h = 0x811c9dc5;
  for (const ch of parts.join('\u0000')) {
    h ^= ch.charCodeAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  h ^= h << 13;
  h ^= h >>> 17;
  h ^= h << 5;
  return (h >>> 0) / 2 ** 32;
}

/** The fault to inject into the `ordinal`-th tool call of the session (1-based), if any. */
export function faultFor(inject: FaultInjection | undefined, tool: string, ordinal: number): Fault | undefined {
  for (const rule of inject?.rules ?? []) {
    if (rule.tool !== '*' && rule.tool !== tool) continue;
    return unitHash(inject?.seed ?? 0, rule.tool, ordinal) < rule.rate ? rule.fault : undefined;
  }
  return undefined;
}

/** The result an injected fault gives the model: what such a failure looks like, marked as injected. */
export function injectedResult(callId: string, name: string, fault: Fault): ToolResult {
  const base = { callId, name, ok: false, durationMs: 0, injected: fault };
  switch (fault) {
    case 'error':
      return { ...base, error: 'TransientError', output: 'The tool failed with a transient error (injected fault). Trying again may work.' };
    case 'timeout':
      return { ...base, error: 'Timeout', exitCode: 124, output: '[timed out; the command and every process it started were killed] (injected fault)' };
    case 'truncated':
      return { ...base, ok: true, output: '[output truncated: the stream ended early] (injected fault)' };
    case 'nonzero':
      return { ...base, error: 'NonZeroExit', exitCode: 1, output: '[exit code 1] (injected fault)' };
  }
}

/** What is wrong with an injection policy; empty when it is fine. */
export function injectionProblems(inject: FaultInjection | undefined, tools?: readonly string[]): string[] {
  if (inject === undefined) return [];
  if (typeof inject !== 'object' || inject === null) return ['inject must be an object with seed and rules'];
  if (!Array.isArray(inject.rules)) return ['inject.rules must be a list of { tool, rate, fault }'];
  const problems: string[] = [];
  if (!Number.isInteger(inject.seed)) problems.push('inject.seed must be an integer');
  for (const [i, r] of inject.rules.entries()) {
    if (typeof r?.tool !== 'string' || !r.tool) problems.push(`inject.rules[${i}].tool must be a tool name or *`);
    else if (tools && r.tool !== '*' && !tools.includes(r.tool)) problems.push(`inject.rules[${i}].tool: no tool is called ${r.tool} (${tools.join(', ')}, or *)`);
    if (!(typeof r.rate === 'number' && r.rate >= 0 && r.rate <= 1)) problems.push(`inject.rules[${i}].rate must be from 0 to 1`);
    if (!['error', 'timeout', 'truncated', 'nonzero'].includes(r.fault)) problems.push(`inject.rules[${i}].fault must be error, timeout, truncated or nonzero`);
  }
  return problems;
}
