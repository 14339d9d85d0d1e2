/**
 * Every failure the API answers, mapped once to an HTTP status and a stable code. The body is
 * always `{ code, message }`; a validation failure's message names the field.
 */
import type { FastifyError } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { ServiceError, SessionError } from '../common/errors';
import type { ApiErrorCode } from './schemas';

/** A refusal the API itself makes (authentication), with its status. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: ApiErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ApiFailure';
  }
}

const SESSION_STATUS: Record<SessionError['code'], { status: number; code: ApiErrorCode }> = {
  invalid: { status: 400, code: 'invalid_request' },
  not_found: { status: 404, code: 'not_found' },
  conflict: { status: 409, code: 'conflict' },
  ended: { status: 409, code: 'ended' },
};

/** The status and body for any error a handler throws. */
export function toApiError(err: unknown): { status: number; body: { code: ApiErrorCode; message: string } } {
  if (err instanceof ApiFailure) return { status: err.status, body: { code: err.code, message: err.message } };
  if (hasZodFastifySchemaValidationErrors(err)) {
    const where = err.validationContext ?? 'request';
    const message = err.validation
      .map((v) => {
        const path = v.instancePath.replace(/^\//, '').replace(/\//g, '.');
        return `${where}${path ? `.${path}` : ''}: ${v.message ?? 'invalid'}`;
      })
      .join('; ');
    return { status: 400, body: { code: 'invalid_request', message } };
  }
  if (err instanceof SessionError) {
    const m = SESSION_STATUS[err.code];
    return { status: m.status, body: { code: m.code, message: err.message } };
  }
  if (err instanceof ServiceError) return { status: 503, body: { code: 'service_unavailable', message: err.message } };
  const f = err as FastifyError;
  // Fastify's own refusals (unparsable JSON, wrong content type, body too large) are the client's.
  if (typeof f.statusCode === 'number' && f.statusCode >= 400 && f.statusCode < 500) {
    return { status: f.statusCode, body: { code: f.statusCode === 404 ? 'not_found' : 'invalid_request', message: f.message } };
  }
  return { status: 500, body: { code: 'internal', message: 'internal error (see the server log)' } };
}
