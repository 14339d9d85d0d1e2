/**
 * The HTTP API (`keel serve`): Fastify with zod schemas (api/schemas.ts) for validation,
 * serialisation and the OpenAPI document at `/openapi.json`. Every other route needs an API key
 * (api/auth.ts) and sees only its tenant's sessions. The web console is at `/console/` (api/console.ts).
 */
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { BlobStore } from '../blobs';
import type { KeelClient } from '../client';
import { KEEL_VERSION } from '../common/constants';
import type { ApiPrincipal, EventHub, Sql } from '../store';
import { authenticate } from './auth';
import { registerConsole } from './console';
import { toApiError } from './errors';
import { registerSessionRoutes } from './routes';
import { registerStreamRoute } from './stream';

/** What the API runs on; the caller owns them (and closes them after the server). */
export interface ApiDeps {
  /** Postgres as the app role: reads, and API key checks. */
  sql: Sql;
  client: KeelClient;
  blobs: BlobStore;
  /** Live events for `/stream`. */
  hub: EventHub;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The API key's id and tenant (set on every route but the public ones). */
    principal: ApiPrincipal;
  }
  interface FastifyContextConfig {
    /** No API key needed. */
    public?: boolean;
  }
}

/** Build the server (not listening yet). `logger` false keeps tests quiet. */
export async function buildApi(deps: ApiDeps, opts: { logger?: boolean } = {}): Promise<FastifyInstance> {
  const app = Fastify({ logger: opts.logger ?? true });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  await app.register(swagger, {
    openapi: {
      info: { title: 'Keel', version: KEEL_VERSION, description: 'Start, steer, watch and audit durable agent sessions.' },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'an API key from `keel apikey create --tenant <t>`' } } },
      security: [{ apiKey: [] }],
    },
    transform: jsonSchemaTransform,
  });

  app.decorateRequest('principal', null as unknown as ApiPrincipal);
  app.addHook('onRequest', async (req) => {
    if (req.routeOptions.config.public) return;
    req.principal = await authenticate(deps.sql, req);
  });
  app.setErrorHandler((err, req, reply) => {
    const { status, body } = toApiError(err);
    if (status >= 500) req.log.error({ err }, 'request failed');
    return reply.code(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send({ code: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` }));

  app.get('/openapi.json', { config: { public: true }, schema: { hide: true } }, async () => app.swagger());
  registerSessionRoutes(app, deps);
  registerStreamRoute(app, deps);
  registerConsole(app);
  return app;
}
