/** The Temporal SDK's logger: plain lines for a terminal, or JSON (pino) for a worker or API process. */
import { DefaultLogger, Runtime, type LogEntry } from '@temporalio/worker';
import { jsonLogger, temporalLogger, type Logger } from '../telemetry/log';

// Expected when a process runs a sandbox-host worker (activities only); not worth a warning.
const EXPECTED = /^No workflows registered/;

/**
 * `KEEL_LOG_LEVEL` (TRACE, DEBUG, INFO, WARN, ERROR) wins over `fallback`. With `json`, Temporal's entries
 * go through a pino logger named `json`, which is returned for the process's own lines.
 */
export function installLogger(fallback: 'INFO' | 'WARN' | 'ERROR', env = process.env, json?: string): Logger | undefined {
  const level = (env.KEEL_LOG_LEVEL?.toUpperCase() ?? (env.KEEL_DEBUG ? 'DEBUG' : fallback)) as LogEntry['level'];
  if (json) {
    const log = jsonLogger(json, level);
    Runtime.install({ logger: temporalLogger(log, level, EXPECTED) });
    return log;
  }
  const logger = new DefaultLogger(level, (entry) => {
    if (EXPECTED.test(entry.message)) return;
    const meta = entry.meta && Object.keys(entry.meta).length ? ` ${JSON.stringify(entry.meta)}` : '';
    console.error(`${new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString()} [${entry.level}] ${entry.message}${meta}`);
  });
  Runtime.install({ logger });
  return undefined;
}
