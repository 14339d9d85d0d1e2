/**
 * `GET /sessions/:id/stream`: a session's events as Server-Sent Events, from the process's one
 * LISTEN connection (store/subscribe.ts), never by polling. Each message's `id` is the event's
 * seq, so a client that reconnects with `Last-Event-ID` (EventSource does) gets exactly the
 * events it missed, then live ones. After `session.ended` (or at once, when a reconnecting
 * client has seen everything of an ended session) the server sends `event: end` and closes.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { getSession } from '../store';
import { ApiFailure } from './errors';
import * as s from './schemas';
import type { ApiDeps } from './server';
import { eventJson, ownedSession } from './sessions';

/** A comment line now and then keeps proxies and load balancers from closing an idle stream. */
const KEEPALIVE_MS = 15_000;

const StreamQuery = z.strictObject({ after: z.coerce.number().int().min(0).optional().describe('start after this seq (Last-Event-ID wins)') });

export function registerStreamRoute(root: FastifyInstance, deps: ApiDeps): void {
  root.withTypeProvider<ZodTypeProvider>().get('/sessions/:id/stream', {
    schema: {
      summary: "a session's events, live, as Server-Sent Events (id: seq, data: the event as JSON); resumes after Last-Event-ID",
      params: s.SessionParams,
      querystring: StreamQuery,
      headers: z.object({ 'last-event-id': z.string().regex(/^\d+$/, 'Last-Event-ID is an event seq (a whole number)').optional() }),
      produces: ['text/event-stream'],
      response: { 200: z.string().describe('text/event-stream'), 400: s.ApiError, 401: s.ApiError, 404: s.ApiError },
    },
    handler: async (req, reply) => {
      const id = req.params.id;
      await ownedSession(deps.sql, deps.client, req.principal.tenant, id);
      const lastId = req.headers['last-event-id'];
      const after = lastId !== undefined ? Number(lastId) : (req.query.after ?? 0);
      if (!Number.isSafeInteger(after)) throw new ApiFailure(400, 'invalid_request', 'headers.last-event-id: not a seq');

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      res.write(`: session ${id}\n\n`);
      let done = false;
      const end = () => {
        if (done) return;
        done = true;
        res.write('event: end\ndata: {}\n\n');
        res.end();
      };
      const sub = await deps.hub.subscribe(id, {
        afterSeq: after,
        onEvent: (e) => {
          if (done) return;
          res.write(`id: ${e.seq}\ndata: ${JSON.stringify(eventJson(e))}\n\n`);
          if (e.type === 'session.ended') end();
        },
        onError: (err) => req.log.warn({ err, sessionId: id }, 'stream read failed; the next notification reads again'),
      });
      const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
      const cleanup = () => {
        clearInterval(keepalive);
        sub.close();
      };
      res.on('close', cleanup);
      res.on('finish', cleanup);
      // A client resuming after the end has nothing more to wait for.
      // (Flushed again after seeing the end: `session.ended` commits with `ended_at`, so it is then read.)
      await sub.flush();
      if ((await getSession(deps.sql, id))?.endedAt) {
        await sub.flush();
        end();
      }
    },
  });
}
