/**
 * Who is asking: every route except `/openapi.json` needs `Authorization: Bearer <API key>`
 * (store/apikeys.ts). The key's tenant is the only tenant the request can see or change.
 */
import type { FastifyRequest } from 'fastify';
import { authenticateApiKey, type ApiPrincipal, type Sql } from '../store';
import { ApiFailure } from './errors';

/** The principal of an authenticated request; throws 401 otherwise. */
export async function authenticate(sql: Sql, req: FastifyRequest): Promise<ApiPrincipal> {
  const header = req.headers.authorization;
  const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  if (!m) throw new ApiFailure(401, 'unauthorized', 'send an API key: Authorization: Bearer <key> (create one with `keel apikey create --tenant <t>`)');
  const principal = await authenticateApiKey(sql, m[1]!);
  if (!principal) throw new ApiFailure(401, 'unauthorized', 'the API key is not valid (unknown, revoked or malformed)');
  return principal;
}
