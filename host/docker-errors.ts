/** Reading errors from the Docker Engine API (dockerode). */

interface DockerishError {
  statusCode?: number;
  code?: string;
  message?: string;
}

/** The HTTP status of a failed Engine API call, if it got that far. */
export function statusOf(err: unknown): number | undefined {
  return (err as DockerishError)?.statusCode;
}

/** A Docker client error that means the daemon itself could not be reached. */
export function isDockerUnreachable(err: unknown): boolean {
  const code = (err as DockerishError)?.code;
  return code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES' || code === 'ECONNRESET' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH';
}

/** Await `p`; false when Docker answered 404 (already gone), true otherwise. */
export async function ignore404<T>(p: Promise<T>): Promise<boolean> {
  try {
    await p;
    return true;
  } catch (err) {
    if (statusOf(err) === 404) return false;
    throw err;
  }
}
