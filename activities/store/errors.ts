import { failure, StoreFailure } from '../../common/failures';

/** Node / postgres.js error codes that mean "the database is not reachable right now". */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'EPIPE',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  // SQLSTATE: admin shutdown, crash shutdown, cannot connect now, too many connections.
  '57P01',
  '57P02',
  '57P03',
  '53300',
]);

function isUnreachable(err: unknown): err is Error & { code: string } {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  // SQLSTATE class 08: connection exception.
  return UNREACHABLE_CODES.has(code) || /^08[0-9A-Z]{3}$/.test(code);
}

/**
 * Classify a store failure at the activity boundary: an unreachable database
 * becomes a retryable `Store.Unavailable`, refused data a non-retryable
 * `Store.BadData`; anything else is rethrown as is (a bug or schema problem,
 * which Temporal also retries, but loudly).
 * The message names DATABASE_URL but never its value (it holds a password).
 */
export function classifyStoreError(err: unknown): never {
  if (isUnreachable(err)) {
    throw failure(StoreFailure.Unavailable, `Postgres is unreachable (${err.code}: ${err.message}). Check DATABASE_URL and that the server is running.`);
  }
  const code = (err as { code?: unknown })?.code;
  // Data exceptions (22xxx) and integrity violations (23xxx): the same write fails the same way every time.
  // Except a unique violation (23505): two attempts of one write racing, which a retry resolves.
  if (err instanceof Error && typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code) && code !== '23505') {
    throw failure(StoreFailure.BadData, `Postgres refused the data (SQLSTATE ${code}: ${err.message})`);
  }
  throw err;
}

/** Run `fn`, classifying its failure with {@link classifyStoreError}. */
export async function withStoreErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    return classifyStoreError(err);
  }
}
