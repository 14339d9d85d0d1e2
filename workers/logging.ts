/** The Temporal SDK's logger: plain lines for a terminal, or JSON (pino) for a worker or API process. */
import { DefaultLogger, Runtime, type LogEntry } from '@temporalio/worker';
import { jsonLogger, temporalLogger, type Logger } from '../telemetry/log';

// Expected when a process runs a sandbox-host worker (activities only); not worth a warning.
const EXPECTED = /^No workflows registered/;

/**
 * `KEEL_LOG_LEVEL` (TRACE, DEBUG, INFO, WARN, ERROR) wins over `fallback`. With `json`, Temporal's entries
 * go through a pino logger named `json`, which is returned for the process's own lines. Otherwise the
 * SDK's native core logs get the same level (by default they print warnings on their own, with task
 * tokens); they stay on the core's console logger: forwarding them into Node holds the event loop open,
 * so a short CLI command would never exit.
 */
export function installLogger(fallback: LogEntry['level'], env = process.env, json?: string): Logger | undefined {
  const level = logLevel(env.KEEL_LOG_LEVEL, env.KEEL_DEBUG ? 'DEBUG' : fallback);
  if (json) {
    const log = jsonLogger(json, level);
    Runtime.install({ logger: temporalLogger(log, level, EXPECTED), telemetryOptions: { logging: { filter: { core: level, other: level } } } });
    return log;
  }
  const logger = new DefaultLogger(level, (entry) => {
    if (EXPECTED.test(entry.message)) return;
    const meta = entry.meta && Object.keys(entry.meta).length ? ` ${JSON.stringify(entry.meta)}` : '';
    console.error(`${new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString()} [${entry.level}] ${entry.message}${meta}`);
  });
  Runtime.install({ logger, telemetryOptions: { logging: { filter: { core: level, other: level } } } });
  return undefined;
}

const LEVELS: readonly LogEntry['level'][] = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR'];

/** An empty value means unset; anything else must be a level, or the process says which ones are. */
export function logLevel(value: string | undefined, fallback: LogEntry['level']): LogEntry['level'] {
  const wanted = value?.trim().toUpperCase();
  if (!wanted) return fallback;
  const level = LEVELS.find((l) => l === wanted);
  if (!level) throw new Error(`KEEL_LOG_LEVEL=${value} is not a level. Fix: one of ${LEVELS.join(', ')}, or unset it`);
  return level;
}
