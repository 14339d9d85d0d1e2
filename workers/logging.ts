/** The Temporal SDK's logger, at a level that suits a terminal. */
import { DefaultLogger, Runtime, type LogEntry } from '@temporalio/worker';

// Expected when a process runs a sandbox-host worker (activities only); not worth a warning.
const EXPECTED = /^No workflows registered/;

/**
 * `KEEL_LOG_LEVEL` (TRACE, DEBUG, INFO, WARN, ERROR) wins over `fallback`. The SDK's native core
 * logs get the same level (by default they print warnings on their own, with task tokens). They
 * stay on the core's console logger: forwarding them into Node holds the event loop open, so a
 * short CLI command would never exit.
 */
export function installLogger(fallback: LogEntry['level'], env = process.env): void {
  const level = logLevel(env.KEEL_LOG_LEVEL, env.KEEL_DEBUG ? 'DEBUG' : fallback);
  const logger = new DefaultLogger(level, (entry) => {
    if (EXPECTED.test(entry.message)) return;
    const meta = entry.meta && Object.keys(entry.meta).length ? ` ${JSON.stringify(entry.meta)}` : '';
    console.error(`${new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString()} [${entry.level}] ${entry.message}${meta}`);
  });
  Runtime.install({ logger, telemetryOptions: { logging: { filter: { core: level, other: level } } } });
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
