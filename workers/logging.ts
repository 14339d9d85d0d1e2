/** The Temporal SDK's logger, at a level that suits a terminal. */
import { DefaultLogger, Runtime, type LogEntry } from '@temporalio/worker';

// Expected when a process runs a sandbox-host worker (activities only); not worth a warning.
const EXPECTED = /^No workflows registered/;

/** `KEEL_LOG_LEVEL` (TRACE, DEBUG, INFO, WARN, ERROR) wins over `fallback`. */
export function installLogger(fallback: 'INFO' | 'WARN' | 'ERROR', env = process.env): void {
  const level = (env.KEEL_LOG_LEVEL?.toUpperCase() ?? (env.KEEL_DEBUG ? 'DEBUG' : fallback)) as LogEntry['level'];
  const logger = new DefaultLogger(level, (entry) => {
    if (EXPECTED.test(entry.message)) return;
    const meta = entry.meta && Object.keys(entry.meta).length ? ` ${JSON.stringify(entry.meta)}` : '';
    console.error(`${new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString()} [${entry.level}] ${entry.message}${meta}`);
  });
  Runtime.install({ logger });
}
