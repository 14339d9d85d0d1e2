/**
 * Sandboxes for the security tests: real containers with the real lockdown
 * (`createOptions`) and the real image, driven over the executor protocol as the
 * host drives them. `env` adds container environment for the executor (e.g.
 * `KEEL_EXECUTOR_RESOLVE=walk`, which forces the path walk that replaces
 * openat2 where the kernel lacks it).
 */
import Docker from 'dockerode';
import { OUTPUT_STORE_CAP } from '../../common/defaults';
import type { SandboxSpec } from '../../common/types';
import { createOptions, defaultImageTag, ensureImage, removeSession, SandboxRuntime, startAttached, type ExecutorResponse } from '../../host';
import { ensureVolume } from '../../host/inventory';
import { testRuntime } from '../helpers/env';

export const docker = new Docker();
export const tag = defaultImageTag();
const HOST = 'test-security';

/** What the host sends with every shell request (activities/sandbox/tool-ops.ts). */
export const SHELL_ARGS = { timeoutSec: 30, maxOutput: 16_000, storeBytes: OUTPUT_STORE_CAP };

export interface ShellResult {
  exitCode: number;
  output: string;
  truncated: boolean;
  timedOut: boolean;
  cancelled: boolean;
  outputBytes: number;
  durationMs: number;
  full?: string;
  cutBytes?: number;
  killedProcesses?: number;
  stoppedBy?: string;
}

export class TestSandbox {
  constructor(
    readonly sessionId: string,
    readonly containerId: string,
    readonly runtime: SandboxRuntime,
  ) {}

  /** One executor request; the raw answer. */
  op(op: string, args: Record<string, unknown>, opts: { key?: string; id?: string; timeoutMs?: number } = {}): Promise<ExecutorResponse> {
    return this.runtime.client(this.containerId).request(op, args, { timeoutMs: 120_000, ...opts });
  }

  /** A shell call that must be answered ok (a non-zero exit is still ok); its result. */
  async sh(command: string, extra: Record<string, unknown> = {}): Promise<ShellResult> {
    const r = await this.op('shell', { command, ...SHELL_ARGS, ...extra });
    if (!r.ok) throw new Error(`shell ${JSON.stringify(command)} failed: ${r.error.code}: ${r.error.message}`);
    return r.result as unknown as ShellResult;
  }

  /** A file tool call (maxOutput as the host sends it); the raw answer. */
  tool(op: 'read_file' | 'write_file' | 'edit_file' | 'list_files', args: Record<string, unknown>): Promise<ExecutorResponse> {
    return this.op(op, { ...args, maxOutput: SHELL_ARGS.maxOutput }, { timeoutMs: 60_000 });
  }

  async ping(timeoutMs = 5000): Promise<Record<string, unknown>> {
    const r = await this.op('ping', {}, { timeoutMs });
    if (!r.ok) throw new Error(`ping failed: ${r.error.code}`);
    return r.result;
  }

  async destroy(): Promise<void> {
    await removeSession(docker, this.sessionId, (id) => this.runtime.forget(id)).catch(() => undefined);
  }
}

/** Start a locked-down sandbox container (the image is built if missing) and wait for its executor. */
export async function startSandbox(name: string, opts: { env?: string[]; spec?: SandboxSpec; runtime?: SandboxRuntime } = {}): Promise<TestSandbox> {
  await ensureImage(docker, tag, (line) => console.error(`[image] ${line}`));
  const runtime = opts.runtime ?? new SandboxRuntime(docker);
  const sessionId = `test-sec-${name}-${process.pid}-${Date.now().toString(36)}`;
  await ensureVolume(docker, sessionId, HOST);
  const options = createOptions({ sessionId, hostId: HOST, image: tag, runtime: testRuntime(), ...(opts.spec ? { spec: opts.spec } : {}) });
  if (opts.env) options.Env = opts.env;
  const container = await docker.createContainer(options);
  await startAttached(runtime, container.id);
  return new TestSandbox(sessionId, container.id, runtime);
}

/** Run a command in the container as root through the Engine API (what an operator can do; commands cannot). */
export async function rootExec(containerId: string, cmd: string[]): Promise<string> {
  const exec = await docker.getContainer(containerId).exec({ Cmd: cmd, User: '0', AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const out: Buffer[] = [];
  const sink = { write: (c: Buffer) => out.push(c) } as unknown as NodeJS.WritableStream;
  docker.modem.demuxStream(stream, sink, sink);
  await new Promise<void>((resolve, reject) => {
    stream.once('end', () => resolve());
    stream.once('error', reject);
  });
  return Buffer.concat(out).toString();
}
