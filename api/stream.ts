/**
 * `GET /sessions/:id/stream`: a session's events as Server-Sent Events, from the process's one
 * LISTEN connection (store/subscribe.ts), never by polling. Each message's `id` is the event's
 * seq, so a client that reconnects with `Last-Event-ID` (EventSource does) gets exactly the
 * events it missed, then live ones. After `session.ended` (or at once, when a reconnecting
 * client has seen everything of an ended session) the server sends `event: end` and closes.
 * A server shutting down closes streams without `end`, so clients reconnect.
 *
 * A running model call's text arrives as `event: delta` messages (data: a `ModelDelta`), which
 * have no `id`: they are not events, are not stored, and do not move `Last-Event-ID`, so
 * resuming stays exact for events; deltas sent while a client was away are not sent again. The
 * `model.call` event that follows carries the whole text.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { getSession, type Subscription } from '../store';
import { ApiFailure } from './errors';
import * as s from './schemas';
import type { ApiDeps } from './server';
import { eventJson, ownedSession } from './sessions';

/** A comment line now and then keeps proxies and load balancers from closing an idle stream. */
const KEEPALIVE_MS = 15_000;

const StreamQuery = z.strictObject({ after: z.coerce.number().int().min(0).optional().describe('start after this seq (Last-Event-ID wins)') });

export function registerStreamRoute(root: FastifyInstance, deps: ApiDeps): void {
  // Open streams, closed (without `end`, so clients reconnect elsewhere) when the server shuts down.
  const open = new Set<() => void>();
  root.addHook('preClose', async () => {
    for (const close of open) close();
  });
  root.withTypeProvider<ZodTypeProvider>().get('/sessions/:id/stream', {
    schema: {
      summary:
        "a session's events, live, as Server-Sent Events (id: seq, data: the event as JSON); resumes after Last-Event-ID. A running model call's text comes as `event: delta` messages without an id (ephemeral: not stored, not resent)",
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
      let sub: Subscription | undefined;
      const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
      // Registered before subscribing: a client gone during the catch-up leaves nothing behind.
      const hangUp = () => res.end();
      open.add(hangUp);
      res.on('close', () => {
        done = true;
        open.delete(hangUp);
        clearInterval(keepalive);
        sub?.close();
      });
      const end = () => {
        if (done) return;
        done = true;
        res.write('event: end\ndata: {}\n\n');
        res.end();
      };
      try {
        sub = await deps.hub.subscribe(id, {
          afterSeq: after,
          onEvent: (e) => {
            if (done) return;
            res.write(`id: ${e.seq}\ndata: ${JSON.stringify(eventJson(e))}\n\n`);
            if (e.type === 'session.ended') end();
          },
          onDelta: (d) => {
            if (!done) res.write(`event: delta\ndata: ${JSON.stringify(d)}\n\n`);
          },
          onError: (err) => req.log.warn({ err, sessionId: id }, 'stream read failed; the next notification reads again'),
        });
        if (done) return sub.close();
        // A client resuming after the end has nothing more to wait for. (Flushed again after seeing
        // the end: `session.ended` commits with `ended_at`, so it is read then.)
        await sub.flush();
        if ((await getSession(deps.sql, id))?.endedAt) {
          await sub.flush();
          end();
        }
      } catch (err) {
        // The response has begun: all that is left is to log and close it; the client reconnects.
        req.log.error({ err, sessionId: id }, 'stream failed');
        res.destroy();
      }
    },
  });
}
