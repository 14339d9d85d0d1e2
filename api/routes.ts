/** The session routes: start, list, show, events, steer, answer, budget, fork, audit. */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { validateSpec } from '../client';
import { replayLive, verifyLive } from '../audit';
import type { SessionSpec } from '../common/types';
import { costOf, priceOf } from '../common/prices';
import { forkSpec, stepDiff, stepsOf } from '../inspect';
import { operatorView } from '../inspect/operator';
import { getEvents, listSessions, sessionTotals } from '../store';
import * as s from './schemas';
import type { ApiDeps } from './server';
import { eventJson, ownedSession, sessionJson } from './sessions';

const errors = { 400: s.ApiError, 401: s.ApiError, 404: s.ApiError, 409: s.ApiError, 503: s.ApiError };

export function registerSessionRoutes(root: FastifyInstance, deps: ApiDeps): void {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const { sql, client } = deps;
  const owned = (tenant: string, id: string) => ownedSession(sql, client, tenant, id);
  /** Who answers or adds budget: what the body says, else the key. */
  const actor = (keyId: string, by: string | undefined) => by ?? `apikey:${keyId}`;

  app.post('/sessions', {
    schema: { summary: 'start a session (the spec `keel run` builds; the tenant is the key\'s)', body: s.StartSession, response: { 201: s.Started, ...errors } },
    handler: async (req, reply) => {
      const { id, ...rest } = req.body;
      const spec: SessionSpec = { ...rest, tenant: req.principal.tenant };
      validateSpec(spec);
      const sessionId = await client.start(spec, id ? { sessionId: id } : {});
      return reply.code(201).send({ sessionId });
    },
  });

  app.get('/sessions', {
    schema: { summary: "the key's tenant's sessions, newest first, with steps, tokens and cost so far", querystring: s.ListQuery, response: { 200: s.SessionListItem.array(), ...errors } },
    handler: async (req) => {
      const rows = await listSessions(sql, { tenant: req.principal.tenant, limit: req.query.limit });
      const totals = await sessionTotals(sql, rows.map((r) => r.id));
      return rows.map((r) => {
        const t = totals.get(r.id) ?? { steps: 0, inputTokens: 0, outputTokens: 0 };
        const price = t.model ? priceOf(t.model) : undefined;
        const usd = price ? Math.round(costOf(t, price) * 1e6) / 1e6 : null;
        return { ...sessionJson(r), steps: t.steps, inputTokens: t.inputTokens, outputTokens: t.outputTokens, usd };
      });
    },
  });

  app.get('/sessions/:id', {
    schema: { summary: 'a session: its row, tool steps, budgets against spending, calls waiting for approval', params: s.SessionParams, response: { 200: s.SessionDetail, ...errors } },
    handler: async (req) => {
      const session = await owned(req.principal.tenant, req.params.id);
      const events = await getEvents(sql, req.params.id);
      const view = operatorView(events);
      return {
        session,
        steps: stepsOf(events),
        budgets: view.budgets,
        spent: Object.fromEntries(Object.entries(view.spent).filter((e): e is [string, number] => typeof e[1] === 'number')),
        pending: view.pending.map((p) => ({
          callId: p.callId,
          tool: p.tool,
          input: p.input,
          ...(p.reason ? { reason: p.reason } : {}),
          since: p.since.toISOString(),
          timeoutSec: p.timeoutSec,
        })),
      };
    },
  });

  app.get('/sessions/:id/events', {
    schema: { summary: "a session's events in seq order (after a seq, at most limit)", params: s.SessionParams, querystring: s.EventsQuery, response: { 200: s.Event.array(), ...errors } },
    handler: async (req) => {
      await owned(req.principal.tenant, req.params.id);
      return (await getEvents(sql, req.params.id, { afterSeq: req.query.after, limit: req.query.limit })).map(eventJson);
    },
  });

  app.get('/sessions/:id/steps/:step/diff', {
    schema: { summary: 'what a step changed in the sandbox\'s files (`keel diff --json`): added, removed, modified, text diffs', params: s.StepParams, response: { 200: s.StepDiff, ...errors } },
    handler: async (req) => {
      await owned(req.principal.tenant, req.params.id);
      return stepDiff({ sessionId: req.params.id, step: req.params.step, events: await getEvents(sql, req.params.id), blobs: deps.blobs });
    },
  });

  app.post('/sessions/:id/messages', {
    schema: { summary: 'add a user message; the model sees it on its next turn', params: s.SessionParams, body: s.Message, response: { 202: s.Accepted, ...errors } },
    handler: async (req, reply) => {
      await owned(req.principal.tenant, req.params.id);
      await client.message(req.params.id, req.body.text);
      return reply.code(202).send({ sessionId: req.params.id });
    },
  });

  app.post('/sessions/:id/cancel', {
    schema: { summary: 'stop the session: the running command is killed, the container removed, the reason recorded', params: s.SessionParams, body: s.Cancel.optional(), response: { 202: s.Accepted, ...errors } },
    handler: async (req, reply) => {
      await owned(req.principal.tenant, req.params.id);
      await client.cancel(req.params.id, req.body?.reason ?? `cancelled through the API (key ${req.principal.keyId})`);
      return reply.code(202).send({ sessionId: req.params.id });
    },
  });

  app.post('/sessions/:id/close', {
    schema: { summary: 'end a kept-alive session instead of waiting for its next message', params: s.SessionParams, response: { 202: s.Accepted, ...errors } },
    handler: async (req, reply) => {
      await owned(req.principal.tenant, req.params.id);
      await client.closeSession(req.params.id);
      return reply.code(202).send({ sessionId: req.params.id });
    },
  });

  app.post('/sessions/:id/approvals/:callId/approve', {
    schema: { summary: 'let a call that waits for approval run', params: s.CallParams, body: s.Approve.optional(), response: { 200: s.Accepted, ...errors } },
    handler: async (req) => {
      await owned(req.principal.tenant, req.params.id);
      await client.approve(req.params.id, req.params.callId, { by: actor(req.principal.keyId, req.body?.by), ...(req.body?.remember ? { remember: true } : {}) });
      return { sessionId: req.params.id };
    },
  });

  app.post('/sessions/:id/approvals/:callId/deny', {
    schema: { summary: 'refuse a call that waits for approval; the model gets the reason', params: s.CallParams, body: s.Deny, response: { 200: s.Accepted, ...errors } },
    handler: async (req) => {
      await owned(req.principal.tenant, req.params.id);
      await client.deny(req.params.id, req.params.callId, { by: actor(req.principal.keyId, req.body.by), reason: req.body.reason });
      return { sessionId: req.params.id };
    },
  });

  app.post('/sessions/:id/budget', {
    schema: { summary: "add to a session's budgets; one stopped at a budget resumes", params: s.SessionParams, body: s.AddBudget, response: { 200: s.Accepted, ...errors } },
    handler: async (req) => {
      await owned(req.principal.tenant, req.params.id);
      await client.addBudget(req.params.id, req.body.add, { by: actor(req.principal.keyId, req.body.by) });
      return { sessionId: req.params.id, status: (await client.status(req.params.id)).status };
    },
  });

  app.post('/sessions/:id/fork', {
    schema: { summary: "a new session from this one's transcript and files at a step; the original is untouched", params: s.SessionParams, body: s.Fork, response: { 201: s.Started, ...errors } },
    handler: async (req, reply) => {
      await owned(req.principal.tenant, req.params.id);
      const { atStep, message, model, id } = req.body;
      const spec = forkSpec(req.params.id, await getEvents(sql, req.params.id), { atStep, ...(message ? { message } : {}), ...(model ? { model } : {}) });
      const sessionId = await client.start({ ...spec, tenant: req.principal.tenant }, id ? { sessionId: id } : {});
      return reply.code(201).send({ sessionId });
    },
  });

  app.get('/sessions/:id/audit/verify', {
    schema: { summary: 'recompute the event hash chain, check it against the Temporal history, re-hash every blob', params: s.SessionParams, response: { 200: s.VerifyReport, ...errors } },
    handler: async (req) => {
      await owned(req.principal.tenant, req.params.id);
      return verifyLive({ sql, temporal: client.temporal, blobs: deps.blobs }, req.params.id);
    },
  });

  app.post('/sessions/:id/audit/replay', {
    schema: { summary: "replay the session's history (every run) against today's workflow code", params: s.SessionParams, response: { 200: s.ReplayOutcome, ...errors } },
    handler: async (req) => {
      await owned(req.principal.tenant, req.params.id);
      return replayLive({ sql, temporal: client.temporal, blobs: deps.blobs }, req.params.id);
    },
  });
}
