/**
 * Structured logs (pino): one JSON object a line on stderr, with `sessionId` on every line about a
 * session. Temporal's own log entries (workflow and activity loggers) carry the workflow id, which
 * for Keel's workflows is the session id: it is lifted into `sessionId`.
 */
import { DefaultLogger, type LogEntry, type LogLevel } from '@temporalio/worker';
import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

const LEVELS: Record<LogLevel, pino.Level> = { TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' };

/** A JSON logger on stderr (fd 2, written synchronously so a crash does not lose the last lines). */
export function jsonLogger(name: string, level: LogLevel = 'INFO', destination: pino.DestinationStream = pino.destination({ fd: 2, sync: true })): Logger {
  return pino({ name, level: LEVELS[level], base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}

/** The fields of a Temporal log entry's meta worth keeping, with the workflow id as `sessionId`. */
export function fieldsOf(meta: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!meta) return {};
  const { workflowId, taskToken: _taskToken, ...rest } = meta;
  return { ...(typeof workflowId === 'string' ? { sessionId: workflowId } : {}), ...rest };
}

/** Temporal's Runtime logger, writing through `log`; entries matching `skip` are dropped. */
export function temporalLogger(log: Logger, level: LogLevel, skip?: RegExp): DefaultLogger {
  return new DefaultLogger(level, (entry: LogEntry) => {
    if (skip?.test(entry.message)) return;
    log[LEVELS[entry.level]](fieldsOf(entry.meta), entry.message);
  });
}
