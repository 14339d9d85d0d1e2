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
import type { Logger } from '../telemetry/log';
import { registry } from '../telemetry/metrics';
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

/**
 * Build the server (not listening yet). `logger` false keeps tests quiet; `loggerInstance` (pino) replaces
 * Fastify's own, and request lines about a session carry its `sessionId`.
 */
export async function buildApi(deps: ApiDeps, opts: { logger?: boolean; loggerInstance?: Logger } = {}): Promise<FastifyInstance> {
  const app = (opts.loggerInstance ? Fastify({ loggerInstance: opts.loggerInstance }) : Fastify({ logger: opts.logger ?? true })) as unknown as FastifyInstance;
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
  // Before the key check, so a refused request's lines name the session too (reply.log writes "request completed").
  app.addHook('onRequest', async (req, reply) => {
    const id = (req.params as { id?: unknown } | undefined)?.id;
    if (typeof id === 'string') req.log = reply.log = req.log.child({ sessionId: id });
  });
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
  // Prometheus scrapes without an API key; bind keel serve to a private address (the default) or filter /metrics in front.
  app.get('/metrics', { config: { public: true }, schema: { hide: true } }, async (_req, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()),
  );
  registerSessionRoutes(app, deps);
  registerStreamRoute(app, deps);
  registerConsole(app);
  return app;
}
