/**
 * A real Temporal dev server for integration tests, on its own port and
 * state file, that a test can stop and start again (state survives).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../workers/config';
import { resolveTemporalCli, startDevServer, toolPath, waitForPort } from '../../workers/dev-server';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.once('error', reject);
  });
}

export class TestTemporal {
  private child?: ChildProcess;
  readonly dir = mkdtempSync(join(tmpdir(), 'keel-temporal-'));

  private constructor(readonly port: number) {}

  static async start(): Promise<TestTemporal> {
    const t = new TestTemporal(await freePort());
    await t.up();
    return t;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    this.child = startDevServer({
      cli: resolveTemporalCli(loadConfig()),
      dbFile: join(this.dir, 'temporal.db'),
      port: this.port,
      uiPort: await freePort(),
      logFile: join(this.dir, 'temporal.log'),
    });
    await waitForPort('127.0.0.1', this.port, 60_000);
  }

  /** Stop the server (SIGTERM by default, SIGKILL for a crash). */
  async down(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill(signal);
    await exited;
    this.child = undefined;
  }
}

/** The time-skipping test server: TEMPORAL_TEST_SERVER, else the copy setup installs in the tool venv. */
export function timeSkippingServerPath(): string {
  return process.env.TEMPORAL_TEST_SERVER || toolPath(loadConfig(), 'temporal-test-server');
}
