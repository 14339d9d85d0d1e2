/**
 * How the client library finds Temporal: explicit options, then the
 * environment (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`), then the defaults.
 * Loads nothing but `@temporalio/client`.
 */
import { Connection } from '@temporalio/client';
import { DEFAULT_TEMPORAL_ADDRESS, DEFAULT_TEMPORAL_NAMESPACE } from '../common/defaults';
import { reasonOf, ServiceError } from '../common/errors';

export interface ConnectionOptions {
  /** Temporal frontend, `host:port`. Env `TEMPORAL_ADDRESS`. @default 'localhost:7233' */
  address?: string;
  /** Env `TEMPORAL_NAMESPACE`. @default 'default' */
  namespace?: string;
  /** Give up connecting after this long. @default 3000 */
  connectTimeoutMs?: number;
}

export type ResolvedConnectionOptions = Required<ConnectionOptions>;

/** Fill each option: given, else from `env`, else its default. */
export function resolveConnectionOptions(opts: ConnectionOptions = {}, env: Record<string, string | undefined> = process.env): ResolvedConnectionOptions {
  return {
    address: opts.address || env.TEMPORAL_ADDRESS || DEFAULT_TEMPORAL_ADDRESS,
    namespace: opts.namespace || env.TEMPORAL_NAMESPACE || DEFAULT_TEMPORAL_NAMESPACE,
    connectTimeoutMs: opts.connectTimeoutMs ?? 3000,
  };
}

/** The fix for an unreachable Temporal, shared by every place that connects. */
export const TEMPORAL_FIX = 'start a dev server with `npx keel dev`, or set TEMPORAL_ADDRESS';

/** A client connection to Temporal at `address`; an unreachable server is a {@link ServiceError} naming the fix. */
export async function connectTemporal(address: string, connectTimeoutMs = 3000): Promise<Connection> {
  try {
    return await Connection.connect({ address, connectTimeout: connectTimeoutMs });
  } catch (err) {
    throw new ServiceError('Temporal', `cannot reach ${address} (${reasonOf(err)})`, TEMPORAL_FIX);
  }
}
