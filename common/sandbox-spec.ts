/**
 * Bounds on a session's sandbox resources. Docker reads 0 as "unlimited", so a
 * spec that asks for 0 memory would turn the limit off: every value is checked,
 * by the client before a session starts and by the sandbox host before it
 * creates a container. Pure code: safe for workflows.
 */
import { SANDBOX_DEFAULTS } from './defaults';
import type { EgressRule, NetworkSpec, SandboxSpec } from './types';

/** Ports an allow entry gets when it names none. */
export const DEFAULT_EGRESS_PORTS: readonly number[] = [443];
/** Most allow entries, and ports per entry, a session may ask for. */
const MAX_ALLOW = 64;
const MAX_PORTS = 16;
/** A DNS name of letters, digits and hyphens, optionally `*.` in front (every name under it). */
const HOST_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

const BOUNDS = {
  memoryMb: [64, 65536],
  cpus: [0.1, 64],
  pidsLimit: [16, 32768],
  idleSuspendSec: [0, 365 * 24 * 3600],
  hostTimeoutSec: [1, 3600],
  diskMb: [64, 1024 * 1024],
} as const;

/** A Docker runtime name as daemon.json registers it (`runc`, `runsc`, `kata-runtime`). */
const RUNTIME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$/;

/** What is wrong with `spec`, one sentence per field; empty when it is fine. */
export function sandboxSpecProblems(spec: SandboxSpec | undefined): string[] {
  if (!spec) return [];
  const problems: string[] = [];
  for (const [field, [min, max]] of Object.entries(BOUNDS)) {
    const value = (spec as Record<string, unknown>)[field];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
      problems.push(`sandbox.${field} must be a number from ${min} to ${max}, not ${JSON.stringify(value)}`);
    }
  }
  if (spec.image !== undefined && (typeof spec.image !== 'string' || !spec.image.trim())) {
    problems.push('sandbox.image must be an image name');
  }
  if (spec.runtime !== undefined && (typeof spec.runtime !== 'string' || !RUNTIME_NAME.test(spec.runtime))) {
    problems.push(`sandbox.runtime must be a Docker runtime name such as runc or runsc, not ${JSON.stringify(spec.runtime)}`);
  }
  if (spec.network !== undefined) problems.push(...networkProblems(spec.network));
  return problems;
}

function networkProblems(network: unknown): string[] {
  const allow = (network as Partial<NetworkSpec> | null)?.allow;
  if (!Array.isArray(allow) || allow.length === 0 || allow.length > MAX_ALLOW) {
    return [`sandbox.network.allow must list 1 to ${MAX_ALLOW} destinations ({ host, ports? }); leave sandbox.network out for no network`];
  }
  const problems: string[] = [];
  allow.forEach((rule: unknown, i) => {
    const where = `sandbox.network.allow[${i}]`;
    const { host, ports } = (rule ?? {}) as Partial<Record<keyof EgressRule, unknown>>;
    if (typeof host !== 'string' || host.length > 253 || !HOST_NAME.test(host.toLowerCase())) {
      problems.push(`${where}.host must be a host name such as example.com or *.example.com, not ${JSON.stringify(host)}`);
    } else if (/^(\*\.)?[\d.]+$/.test(host)) {
      problems.push(`${where}.host must be a name, not an IP address (${host}): the proxy checks names and refuses address literals`);
    }
    if (ports === undefined) return;
    if (!Array.isArray(ports) || ports.length === 0 || ports.length > MAX_PORTS || !ports.every((p) => Number.isInteger(p) && p >= 1 && p <= 65535)) {
      problems.push(`${where}.ports must list 1 to ${MAX_PORTS} port numbers from 1 to 65535, not ${JSON.stringify(ports)}`);
    }
  });
  return problems;
}

/** A valid spec's allowlist as the proxy applies it (lower-case names, default ports); empty when it has no network. */
export function egressRules(spec: SandboxSpec | undefined): Array<Required<EgressRule>> {
  return (spec?.network?.allow ?? []).map((r) => ({ host: r.host.toLowerCase(), ports: [...(r.ports ?? DEFAULT_EGRESS_PORTS)] }));
}

/** The network policy in one line, for the runtime contract: `none`, or `egress proxy: example.com:443, …`. */
export function networkPolicy(spec: SandboxSpec | undefined): string {
  const rules = egressRules(spec);
  return rules.length ? `egress proxy: ${rules.map((r) => `${r.host}:${r.ports.join(',')}`).join(' ')}` : 'none';
}

/** A spec's resource limits and timings, each field given or its default. */
export function sandboxLimits(spec: SandboxSpec | undefined): { [K in keyof typeof SANDBOX_DEFAULTS]: number } {
  return {
    memoryMb: spec?.memoryMb ?? SANDBOX_DEFAULTS.memoryMb,
    cpus: spec?.cpus ?? SANDBOX_DEFAULTS.cpus,
    pidsLimit: spec?.pidsLimit ?? SANDBOX_DEFAULTS.pidsLimit,
    idleSuspendSec: spec?.idleSuspendSec ?? SANDBOX_DEFAULTS.idleSuspendSec,
    hostTimeoutSec: spec?.hostTimeoutSec ?? SANDBOX_DEFAULTS.hostTimeoutSec,
    diskMb: spec?.diskMb ?? SANDBOX_DEFAULTS.diskMb,
  };
}
