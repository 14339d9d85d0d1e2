import { APICallError } from '@ai-sdk/provider';
import { ApplicationFailure } from '@temporalio/common';
import { RetryError } from 'ai';
import { failure, ModelFailure } from '../../common/failures';

/** What the classifier needs to know about the call that failed. */
export interface FailureContext {
  /** e.g. `anthropic:claude-sonnet-4-5`, for messages. */
  label: string;
  /** Strings to scrub from messages (API keys): secrets must never reach workflow history. */
  secrets: readonly string[];
  /** Set when our own request timeout fired. */
  timedOutAfterMs?: number;
}

const MAX_DETAIL = 500;

/** Remove every secret from `text` and cap it. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s) out = out.split(s).join('[redacted]');
  return out.length > MAX_DETAIL ? `${out.slice(0, MAX_DETAIL)}...` : out;
}

/**
 * Milliseconds to wait from `retry-after-ms` or `retry-after` (delta seconds or
 * an HTTP date), or undefined when absent or unusable.
 */
export function retryAfterMs(headers: Record<string, string> | undefined, now = Date.now()): number | undefined {
  if (!headers) return undefined;
  const get = (name: string) => Object.entries(headers).find(([k]) => k.toLowerCase() === name)?.[1]?.trim();
  const ms = get('retry-after-ms');
  if (ms && /^\d+(\.\d+)?$/.test(ms)) return Math.ceil(Number(ms));
  const ra = get('retry-after');
  if (!ra) return undefined;
  if (/^\d+(\.\d+)?$/.test(ra)) return Math.ceil(Number(ra) * 1000);
  const at = Date.parse(ra);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

function findApiCallError(err: unknown): APICallError | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e; depth++) {
    if (APICallError.isInstance(e)) return e;
    e = RetryError.isInstance(e) ? e.lastError : (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function isAbort(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return name === 'AbortError' || name === 'TimeoutError';
}

/** An ApplicationFailure of ours, thrown as it is or as the cause of an SDK error (a few levels at most). */
function ownFailure(err: unknown): ApplicationFailure | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e; depth++) {
    if (e instanceof ApplicationFailure) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Turn a failed model call into the ApplicationFailure the workflow's retry
 * policy understands. Returns the error to throw; never includes the request
 * body (it is the whole transcript) or any secret.
 *
 * - 429: retryable `Model.RateLimit`, `nextRetryDelay` from `retry-after`.
 * - 401 / 403: non-retryable `Model.Auth`.
 * - 408, 5xx, network errors, our timeout: retryable `Model.Unavailable`.
 * - other 4xx: non-retryable `Model.BadRequest`.
 * - ApplicationFailures (from the scripted model or provider setup, or the
 *   response guard: the SDK wraps an error of a streamed body in an
 *   APICallError "Failed to process successful response" whose `cause` it
 *   is) and aborts caused by activity cancellation pass through unchanged, as does
 *   anything else (an unexpected bug is not disguised as an outage), except
 *   that an error whose message contains a secret is replaced by a scrubbed one.
 */
export function classifyModelError(err: unknown, ctx: FailureContext): unknown {
  const own = ownFailure(err);
  if (own) return own;
  const api = findApiCallError(err);
  if (api) {
    const status = api.statusCode;
    const detail = redact(api.message, ctx.secrets);
    const details = [{ statusCode: status ?? null }];
    if (status === 429) {
      const delay = retryAfterMs(api.responseHeaders);
      return failure(ModelFailure.RateLimit, `${ctx.label} is rate limited (HTTP 429${delay !== undefined ? `, retry after ${delay} ms` : ''}): ${detail}`, {
        details,
        ...(delay !== undefined ? { nextRetryDelayMs: delay } : {}),
      });
    }
    if (status === 401 || status === 403) {
      return failure(ModelFailure.Auth, `${ctx.label} refused the credentials (HTTP ${status}): ${detail}. Check the API key the worker was given.`, { details });
    }
    if (status !== undefined && status >= 400 && status < 500 && status !== 408) {
      return failure(ModelFailure.BadRequest, `${ctx.label} rejected the request (HTTP ${status}): ${detail}`, { details });
    }
    return failure(ModelFailure.Unavailable, `${ctx.label} is unavailable (${status !== undefined ? `HTTP ${status}` : 'network error'}): ${detail}`, { details });
  }
  if (ctx.timedOutAfterMs !== undefined && isAbort(err)) {
    return failure(ModelFailure.Unavailable, `${ctx.label} did not answer within ${ctx.timedOutAfterMs} ms`);
  }
  if (err instanceof Error && ctx.secrets.some((s) => s && err.message.includes(s))) {
    // A fresh error: the original's stack and cause would carry the secret too.
    return new Error(redact(err.message, ctx.secrets));
  }
  return err;
}
