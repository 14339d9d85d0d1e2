/**
 * Bounds on a session's sandbox resources. Docker reads 0 as "unlimited", so a
 * spec that asks for 0 memory would turn the limit off: every value is checked,
 * by the client before a session starts and by the sandbox host before it
 * creates a container. Pure code: safe for workflows.
 */
import { SANDBOX_DEFAULTS } from './defaults';
import type { SandboxSpec } from './types';

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
  return problems;
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
