/**
 * `keel audit verify | replay | rerun` and `keel export`: checking what a session did,
 * from the live services or from an offline bundle.
 */
import type { Command } from 'commander';
import { loadHistories, readBundle, replayLive, verifyLive, verifySession, writeBundle, type VerifyReport } from '../audit';
import { SessionError } from '../common/errors';
import { getChainedEvents, type Sql } from '../store';
import type { KeelConfig } from '../workers/config';
import { connectDatabase, openBlobStore } from '../workers/services';
import { runRerun, type RerunCliOptions } from './rerun';
import { connectClient } from './sessions';
import { print, printJson } from './terminal';
import type { KeelClient } from '../client';

/** Temporal if it answers (for live histories); the archive is the fallback. */
async function maybeClient(cfg: KeelConfig): Promise<KeelClient | undefined> {
  return connectClient(cfg).catch(() => undefined);
}

function printReport(r: VerifyReport): void {
  const first = r.problems[0];
  if (first) {
    print(`FAIL ${r.sessionId}: ${first.message}`);
    for (const p of r.problems.slice(1, 10)) print(`  also: ${p.message}`);
    if (r.problems.length > 10) print(`  and ${r.problems.length - 10} more`);
  } else {
    print(`OK ${r.sessionId}`);
  }
  print(
    `  ${r.events} events, ${r.chained} chained; ${r.anchors} chain heads checked against ${r.runs} Temporal run histor${r.runs === 1 ? 'y' : 'ies'}; ` +
      `${r.compared} model and tool results compared with the history; ${r.blobs} blobs re-hashed`,
  );
  for (const n of r.notes) print(`  note: ${n}`);
}

/** Load everything a live session's audit needs. */
async function withLive<T>(cfg: KeelConfig, fn: (ctx: { sql: Sql; client?: KeelClient; blobs: ReturnType<typeof openBlobStore>['blobs'] }) => Promise<T>): Promise<T> {
  const sql = await connectDatabase(cfg);
  const store = openBlobStore(cfg);
  const client = await maybeClient(cfg);
  try {
    return await fn({ sql, blobs: store.blobs, ...(client ? { client } : {}) });
  } finally {
    await client?.close();
    store.close();
    await sql.end({ timeout: 2 });
  }
}

export function registerAudit(program: Command, config: () => KeelConfig): void {
  const audit = program.command('audit').description("check a session's record: the hash chain, the Temporal history, the blobs; replay it against today's code; rerun its tool calls");

  audit
    .command('verify')
    .description('recompute the event chain, check it against the Temporal history and re-hash every blob it references; exit 1 on any difference')
    .argument('[sessionId]')
    .option('--bundle <file>', 'verify an exported bundle instead, with no database, Temporal or network')
    .option('--json', 'print JSON')
    .action(async (id: string | undefined, o: { bundle?: string; json?: boolean }) => {
      let report: VerifyReport;
      if (o.bundle) {
        const bundle = await readBundle(o.bundle).catch((err: Error) => {
          throw new SessionError(err.message);
        });
        if (id && id !== bundle.sessionId) throw new SessionError(`the bundle holds session ${bundle.sessionId}, not ${id}`);
        report = await verifySession({
          sessionId: bundle.sessionId,
          events: bundle.events,
          histories: bundle.histories,
          readBlob: async (sha) => bundle.blobs.get(sha),
        });
      } else {
        if (!id) throw new SessionError('say which session to verify, or give --bundle <file>');
        report = await withLive(config(), ({ sql, client, blobs }) => verifyLive({ sql, blobs, ...(client ? { temporal: client.temporal } : {}) }, id));
      }
      if (o.json) printJson(report);
      else printReport(report);
      process.exitCode = report.ok ? 0 : 1;
    });

  audit
    .command('replay')
    .description("replay a session's whole history (every run) against today's workflow code: the gate before deploying a workflow change")
    .argument('[sessionId]')
    .option('--all', 'replay every session (with --since, --running), exit non-zero if any fails')
    .option('--since <when>', 'with --all: sessions created since this time (ISO date) or this long ago (e.g. 7d, 12h)', '7d')
    .option('--running', 'with --all: only sessions still running or waiting')
    .option('--json', 'print JSON')
    .action(async (id: string | undefined, o: { all?: boolean; since: string; running?: boolean; json?: boolean }) => {
      if (!id && !o.all) throw new SessionError('say which session to replay, or --all');
      await withLive(config(), async ({ sql, client, blobs }) => {
        const ids = id ? [id] : await sessionsSince(sql, o.since, Boolean(o.running));
        const outcomes = [];
        for (const sid of ids) {
          outcomes.push(await replayLive({ sql, blobs, ...(client ? { temporal: client.temporal } : {}) }, sid));
          const last = outcomes[outcomes.length - 1];
          if (!o.json && last) print(last.ok ? `OK   ${sid} (${last.runs} run${last.runs === 1 ? '' : 's'})` : `FAIL ${sid}: ${last.failure?.message}`);
        }
        const failed = outcomes.filter((x) => !x.ok).length;
        if (o.json) printJson({ ok: failed === 0, replayed: outcomes.length, failed, outcomes });
        else print(`${outcomes.length} session${outcomes.length === 1 ? '' : 's'} replayed, ${failed} failed`);
        process.exitCode = failed === 0 ? 0 : 1;
      });
    });

  audit
    .command('rerun')
    .description(
      "run a session's recorded sandbox tool calls again, each in a fresh sandbox restored to the files it started from, " +
        'and compare them with the recording: match, nondeterministic or drift; exit 1 on drift',
    )
    .argument('<sessionId>')
    .option('--image <tag>', 'rerun on this image; each call also reruns on its recorded image, to tell nondeterminism from drift')
    .option('--from-step <n>', 'only the calls of step N and later', '1')
    .option('--model <mode>', '"replay": drive the whole session again as a new session on today\'s runtime, its recorded model answers replayed')
    .option('--no-worker', 'with --model replay: do not run a worker in this process (a `keel worker` must be running)')
    .option('--json', 'print JSON')
    .action(async (id: string, o: RerunCliOptions) => {
      process.exitCode = await runRerun(config(), id, o);
    });

  program
    .command('export')
    .description('write a self-contained bundle of a session (events, histories, every blob they reference) for offline checking')
    .argument('<sessionId>')
    .argument('<file>', 'the bundle to write (.jsonl, or .jsonl.gz to compress)')
    .action(async (id: string, file: string) => {
      await withLive(config(), async ({ sql, client, blobs }) => {
        const events = await getChainedEvents(sql, id);
        if (events.length === 0) throw new SessionError(`no session ${id} in the event log`);
        const histories = await loadHistories(sql, client?.temporal, blobs, id);
        const counts = await writeBundle({ file, sessionId: id, events, histories: histories?.runs ?? [], blobs });
        print(`wrote ${file}: ${counts.events} events, ${counts.runs} run histories, ${counts.blobs} blobs${counts.missing ? ` (${counts.missing} referenced blobs were missing from the store)` : ''}`);
        if (!histories) print('note: no Temporal history or archive for this session; the bundle cannot anchor its chain');
      });
    });
}

/** Sessions created since `since` (an ISO time, or `<n>d` / `<n>h` ago), optionally only live ones. */
async function sessionsSince(sql: Sql, since: string, running: boolean): Promise<string[]> {
  const rel = /^(\d+)([dh])$/.exec(since);
  const from = rel ? new Date(Date.now() - Number(rel[1]) * (rel[2] === 'd' ? 86_400_000 : 3_600_000)) : new Date(since);
  if (Number.isNaN(from.getTime())) throw new SessionError(`--since takes an ISO date or a span like 7d or 12h, not "${since}"`);
  const rows = running
    ? await sql<{ id: string }[]>`select id from sessions where created_at >= ${from} and status in ('running', 'waiting') order by created_at`
    : await sql<{ id: string }[]>`select id from sessions where created_at >= ${from} order by created_at`;
  return rows.map((r) => r.id);
}
