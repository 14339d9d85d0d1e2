/**
 * The two errors a Keel user meets first, shared by the client library, the
 * workers and the CLI (which prints them in one line). Pure code.
 */

export type ServiceName = 'Temporal' | 'Postgres' | 'Docker' | 'Sandbox image' | 'Model' | 'Blob store';

/** A service Keel cannot use; `fix` is a command or setting that resolves it. */
export class ServiceError extends Error {
  constructor(
    readonly service: ServiceName,
    message: string,
    readonly fix: string,
  ) {
    super(`${service}: ${message}. Fix: ${fix}`);
    this.name = 'ServiceError';
  }
}

/**
 * Why a request was refused, for callers that answer differently (the HTTP API's status codes):
 * `invalid` bad input, `not_found` no such session (or call), `conflict` the session exists or is
 * not in a state that allows it, `ended` the session has ended.
 */
export type SessionErrorCode = 'invalid' | 'not_found' | 'conflict' | 'ended';

/** A request Keel refuses: unknown session, duplicate id, bad spec. */
export class SessionError extends Error {
  override name = 'SessionError';
  constructor(
    message: string,
    readonly code: SessionErrorCode = 'invalid',
  ) {
    super(message);
  }
}

/** The first line of an error's reason, with its code, for one-line messages. */
export function reasonOf(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { message?: string } };
  const text = e?.cause?.message || e?.message || String(err);
  return (e?.code && !text.includes(e.code) ? `${e.code} ${text}` : text).split('\n')[0]!.slice(0, 200);
}
