/** `keel serve` (the HTTP API), `keel apikey create | list | revoke`, and `keel tail`. */
import type { Command } from 'commander';
import { buildApi } from '../api/server';
import { ServiceError, SessionError } from '../common/errors';
import type { EventRow } from '../common/events';
import { follow } from '../inspect';
import { connect, countSessionsByStatus, createApiKey, EventHub, getEvents, getSession, listApiKeys, migrate, revokeApiKey, SchemaOutdatedError, type Sql } from '../store';
import { watchSessions } from '../telemetry/metrics';
import type { KeelConfig } from '../workers/config';
import { installLogger } from '../workers/logging';
import { connectDatabase, openBlobStore, redactUrl } from '../workers/services';
import { livePrinter } from './live-text';
import { connectClient, progressPrinter } from './sessions';
import { print, printJson } from './terminal';

export function registerServe(program: Command, config: () => KeelConfig): void {
  program
    .command('serve')
    .description('run the HTTP API (OpenAPI at /openapi.json); every request needs an API key (`keel apikey create`)')
    .option('--host <host>', 'listen address (default KEEL_API_HOST, 127.0.0.1)')
    .option('--port <port>', 'listen port (default KEEL_API_PORT, 8080)')
    .action(async (o: { host?: string; port?: string }) => {
      const cfg = config();
      const log = installLogger('INFO', cfg.env, cfg.logFormat === 'json' ? 'keel-serve' : undefined);
      const sql = await connectDatabase(cfg);
      const client = await connectClient(cfg, 'keel-serve');
      const store = openBlobStore(cfg);
      const hub = new EventHub(sql);
      watchSessions(() => countSessionsByStatus(sql));
      const app = await buildApi({ sql, client, blobs: store.blobs, hub }, log ? { loggerInstance: log } : {});
      const address = await app.listen({ host: o.host ?? cfg.apiHost, port: o.port !== undefined ? Number(o.port) : cfg.apiPort });
      print(`keel API on ${address} (OpenAPI: ${address}/openapi.json; web console: ${address}/console/; metrics: ${address}/metrics)`);
      await new Promise<void>((resolve) => {
        for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve());
      });
      await app.close();
      await hub.close();
      store.close();
      await client.close();
      await sql.end({ timeout: 2 });
    });

  const apikey = program.command('apikey').description('API keys for `keel serve`, each bound to a tenant (needs the owner role: KEEL_DATABASE_OWNER_URL)');
  apikey
    .command('create')
    .description('make a key for a tenant and print it once (only its hash is stored)')
    .requiredOption('--tenant <tenant>', 'the tenant whose sessions the key sees and changes')
    .option('--json', 'print JSON')
    .action(async (o: { tenant: string; json?: boolean }) => {
      const made = await asOwner(config(), (sql) => createApiKey(sql, o.tenant));
      if (o.json) return printJson(made);
      print(made.key, '', `key ${made.id} for tenant ${made.tenant}: shown once, keep it secret; send it as Authorization: Bearer <key>`);
    });
  apikey
    .command('list')
    .description('keys (never their secrets): id, tenant, created, revoked')
    .option('--tenant <tenant>', "only this tenant's")
    .option('--json', 'print JSON')
    .action(async (o: { tenant?: string; json?: boolean }) => {
      const keys = await asOwner(config(), (sql) => listApiKeys(sql, o.tenant !== undefined ? { tenant: o.tenant } : {}));
      if (o.json) return printJson(keys);
      if (keys.length === 0) return print('no API keys: `keel apikey create --tenant <t>`');
      for (const k of keys) print(`${k.id}  ${k.tenant.padEnd(20)} created ${k.createdAt.toISOString()}${k.revokedAt ? `  revoked ${k.revokedAt.toISOString()}` : ''}`);
    });
  apikey
    .command('revoke')
    .description('revoke a key by its id; requests with it are refused from then on')
    .argument('<keyId>')
    .action(async (id: string) => {
      if (!(await asOwner(config(), (sql) => revokeApiKey(sql, id)))) throw new SessionError(`no live API key ${id}`, 'not_found');
      print(`revoked API key ${id}`);
    });

  program
    .command('tail')
    .description("print a session's steps as they are recorded (LISTEN/NOTIFY), until it ends")
    .argument('<sessionId>')
    .option('--after <seq>', 'start after this event seq', '0')
    .option('--json', 'print each event as one JSON line')
    .action(async (id: string, o: { after: string; json?: boolean }) => {
      const after = Number(o.after);
      if (!Number.isInteger(after) || after < 0) throw new SessionError(`--after takes an event seq (0, 1, ...), not "${o.after}"`);
      const sql = await connectDatabase(config());
      try {
        if (!(await getSession(sql, id)) && (await getEvents(sql, id, { limit: 1 })).length === 0) throw new SessionError(`no session ${id} in the event log`, 'not_found');
        // An ended session's log is complete: print it and return rather than wait.
        const ended = (await getSession(sql, id))?.endedAt ? Promise.resolve() : undefined;
        const stop = { afterSeq: after, ...(ended ? { stop: ended } : {}) };
        if (o.json) await follow(sql, id, (e: EventRow) => print(JSON.stringify(e)), stop);
        else {
          // Model text shows as it is generated; the turn's event then closes it.
          const live = livePrinter(progressPrinter(false));
          await follow(sql, id, (e) => live.onEvent(e), { ...stop, onDelta: (d) => live.onDelta(d) });
        }
      } finally {
        await sql.end({ timeout: 2 });
      }
    });
}

/** Run `fn` as the owner role (key creation and revocation are the operator's), schema up to date. */
async function asOwner<T>(cfg: KeelConfig, fn: (sql: Sql) => Promise<T>): Promise<T> {
  const sql = connect(cfg.databaseOwnerUrl);
  try {
    await migrate(sql);
    return await fn(sql);
  } catch (err) {
    if ((err as { code?: unknown }).code !== '42501' && !(err instanceof SchemaOutdatedError)) throw err;
    throw new ServiceError('Postgres', `${redactUrl(cfg.databaseOwnerUrl)} may not manage API keys (${(err as Error).message})`, 'set KEEL_DATABASE_OWNER_URL to the role that owns the tables (npm run setup creates keel_owner)');
  } finally {
    await sql.end({ timeout: 2 });
  }
}
