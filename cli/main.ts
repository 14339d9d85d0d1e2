/**
 * The `keel` command line. Every command that cannot reach a service fails in
 * one line that names it and the fix; `KEEL_DEBUG=1` shows stack traces.
 */
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { WorkflowFailedError } from '@temporalio/client';
import { readBlob } from '../blobs';
import type { KeelClient } from '../client';
import { ServiceError, SessionError } from '../common/errors';
import type { SessionSpec, SessionState, SessionStatus } from '../common/types';
import { bundleBlobs, collectGarbage, readBundle } from '../audit';
import { forkSpec, reconcileLive, reconcileSession } from '../inspect';
import { stepsOf } from '../inspect';
import { connect, forksOf, getEvents, getSession, listSessions, migrate, toolResultOf } from '../store';
import { loadConfig, type KeelConfig } from '../workers/config';
import { devServerFiles, resolveTemporalCli, startDevServer, waitForPort } from '../workers/dev-server';
import { connectDatabase, connectDocker, openBlobStore, redactUrl } from '../workers/services';
import { installLogger } from '../workers/logging';
import { reapOnce } from '../workers/reaper';
import { exitGracefully } from '../workers/signals';
import { createWorkers } from '../workers/worker';
import { stopTracing } from '../telemetry/tracing';
import { registerAudit } from './audit';
import { registerServe } from './serve';
import { runDiff } from './diff';
import { registerEval } from './eval';
import { registerFiles, seedWorkspace } from './files';
import { registerImage } from './image';
import { printChecks, runDoctor } from './doctor';
import { addOperatorRunOptions, operatorLines, operatorSpec, operatorView, registerOperator, type OperatorRunOptions } from './operator';
import { connectClient, demoSpec, exitCodeFor, runSession, runSpec, withClient } from './sessions';
import { formatTimeline } from './timeline';
import { print, printJson, writeBytes } from './terminal';

const program = new Command('keel')
  .description('Durable, sandboxed AI agent sessions on Temporal, Docker and Postgres.')
  .option('--verbose', "show the Temporal SDK's log lines (also: KEEL_LOG_LEVEL=DEBUG|INFO|WARN|ERROR)")
  .showHelpAfterError();

const config = (): KeelConfig => loadConfig();

program
  .command('demo')
  .description('run a scripted coding session in a real sandbox and show its timeline')
  .option('--json', 'print one JSON object instead of progress')
  .option('--no-worker', 'do not run a worker in this process (a `keel worker` must be running)')
  .action(async (o: { json?: boolean; worker: boolean }) => {
    process.exitCode = await runSession(config(), demoSpec(), { json: o.json, worker: o.worker });
  });

addOperatorRunOptions(program
  .command('run')
  .description('start a session with a real or scripted model')
  .argument('<task>', 'what the agent should do')
  .option('--model <provider:model>', 'anthropic:…, openai:… or openai-compatible:…')
  .option('--script <file>', 'a JSON array of scripted turns instead of a real model')
  .option('--base-url <url>', 'base URL for an OpenAI-compatible server (vLLM, Ollama, llama.cpp)')
  .option('--max-steps <n>', 'model turns before the session stops', undefined)
  .option('--keep-alive', 'when the model is done, wait for the next message instead of ending (until `keel close`)')
  .option('--idle-timeout <sec>', 'with --keep-alive: end after this many seconds without a message (default 7 days)')
  .option('--context-tokens <n>', "the model's context window in tokens (default: from the table in the README)")
  .option('--allow-net <host[:ports]>', 'let the sandbox reach this host (example.com, *.example.com; ports 443 unless given: host:80,443) through the egress proxy; repeat for more', (v: string, all: string[]) => [...all, v], [] as string[])
  .option('--mcp <server>', "offer the tools of this MCP server (a name in the workers' KEEL_MCP_CONFIG) as <server>__<tool>; repeat for more", (v: string, all: string[]) => [...all, v], [] as string[])
  .option('--mcp-sandbox <file>', 'run the stdio MCP servers of this JSON file ({"mcpServers": {"<name>": {"command": "...", "args": [...], "env": {...}}}}) inside the session\'s sandbox, as the commands\' user, and offer their tools as <name>__<tool>; env is recorded: no secrets')
  .option('--image <name>', "the sandbox image: a custom one from `keel image build` (default: the sandbox host's, `keel image`)")
  .option('--id <sessionId>', 'session id (default: generated)')
  .option('--workspace <path>', "what /workspace starts with: a directory, a .tar/.tar.gz file, or a git repository (its tree at --ref, history included)")
  .option('--ref <ref>', 'with a git repository as --workspace: the branch, tag or commit to check out (default HEAD)')
  .option('--detach', 'print the session id and return at once (needs a running `keel worker`)')
  .option('--json', 'print one JSON object instead of progress')
  .option('--no-worker', 'do not run a worker in this process (a `keel worker` must be running)'))
  .action(async (task: string, o: Record<string, string | boolean | undefined>) => {
    if (o.ref !== undefined && o.workspace === undefined) throw new SessionError('--ref picks a commit of the --workspace git repository; give --workspace too');
    const { price, ...operator } = operatorSpec(o as OperatorRunOptions);
    const base = runSpec(task, {
      model: o.model as string | undefined,
      script: o.script as string | undefined,
      baseUrl: o.baseUrl as string | undefined,
      maxSteps: o.maxSteps as string | undefined,
      keepAlive: Boolean(o.keepAlive),
      idleTimeout: o.idleTimeout as string | undefined,
      contextTokens: o.contextTokens as string | undefined,
      allowNet: o.allowNet as unknown as string[],
      mcp: o.mcp as unknown as string[],
      mcpSandbox: o.mcpSandbox as string | undefined,
      image: o.image as string | undefined,
    });
    const spec: SessionSpec = { ...base, ...operator, model: { ...base.model, ...(price ? { price } : {}) } };
    if (typeof o.workspace === 'string') {
      const workspace = await seedWorkspace(config(), o.workspace, o.ref as string | undefined);
      spec.workspace = workspace;
      if (!o.json) print(`workspace: ${workspace.source} stored as snapshot ${workspace.snapshot.slice(0, 12)} (${workspace.files} files, ${workspace.bytes} bytes)`);
    }
    process.exitCode = await runSession(config(), spec, {
      json: Boolean(o.json),
      worker: Boolean(o.worker),
      detach: Boolean(o.detach),
      sessionId: o.id as string | undefined,
    });
  });

program
  .command('fork')
  .description("start a new session from another's transcript and files at one of its steps; the original is untouched")
  .argument('<sessionId>', 'the session to fork')
  .requiredOption('--at <step>', 'the step the fork starts after (its transcript and files as they were then)')
  .option('--message <text>', 'a new instruction the model sees first')
  .option('--model <provider:model>', 'another model (default: the original\'s)')
  .option('--script <file>', 'a scripted model for the fork (played from its first turn)')
  .option('--base-url <url>', 'base URL for an OpenAI-compatible server')
  .option('--id <sessionId>', 'the fork\'s session id (default: generated)')
  .option('--detach', 'print the session id and return at once (needs a running `keel worker`)')
  .option('--json', 'print one JSON object instead of progress')
  .option('--no-worker', 'do not run a worker in this process')
  .action(async (from: string, o: Record<string, string | boolean | undefined>) => {
    const cfg = config();
    const sql = await connectDatabase(cfg);
    let spec: SessionSpec;
    try {
      const events = await getEvents(sql, from);
      const started = events.find((e) => e.type === 'session.started');
      const task = started?.type === 'session.started' ? (started.data.spec?.task ?? started.data.task) : '';
      const model = o.model || o.script ? runSpec(task, { model: o.model as string | undefined, script: o.script as string | undefined, baseUrl: o.baseUrl as string | undefined }).model : undefined;
      spec = forkSpec(from, events, { atStep: Number(o.at), ...(o.message ? { message: o.message as string } : {}), ...(model ? { model } : {}) });
    } finally {
      await sql.end({ timeout: 2 });
    }
    process.exitCode = await runSession(cfg, spec, { json: Boolean(o.json), worker: Boolean(o.worker), detach: Boolean(o.detach), sessionId: o.id as string | undefined });
  });

program
  .command('worker')
  .description('poll Temporal and run sessions (role from KEEL_WORKER_ROLE: all, session or sandbox)')
  .option('--role <role>', 'all, session or sandbox (overrides KEEL_WORKER_ROLE)')
  .action(async (o: { role?: string }) => {
    const cfg = loadConfig({ ...process.env, ...(o.role ? { KEEL_WORKER_ROLE: o.role } : {}) });
    const log = installLogger('INFO', cfg.env, cfg.logFormat === 'json' ? 'keel-worker' : undefined);
    const workers = await createWorkers(cfg, log ? { log } : {});
    exitGracefully(workers, cfg.shutdownGraceSec);
    const polling = `keel worker (${cfg.workerRole}) polling ${cfg.temporalAddress}${workers.hostQueue ? `; host queue ${workers.hostQueue}` : ''}`;
    const metrics = workers.metricsPort !== undefined ? `; metrics on :${workers.metricsPort}/metrics` : '';
    if (log) log.info({ role: cfg.workerRole, temporal: cfg.temporalAddress, hostQueue: workers.hostQueue, metricsPort: workers.metricsPort, tracesUrl: cfg.tracesUrl }, 'keel worker polling');
    else print(polling + metrics);
    await workers.run();
  });

program
  .command('dev')
  .description('start a local Temporal dev server whose state survives restarts (.keel/temporal.db)')
  .option('--detach', 'run in the background; logs in .keel/temporal.log')
  .option('--port <port>', 'frontend port', '7233')
  .action(async (o: { detach?: boolean; port: string }) => {
    const cfg = config();
    const files = devServerFiles(cfg.stateDir);
    const port = Number(o.port);
    const child = startDevServer({
      cli: resolveTemporalCli(cfg),
      dbFile: files.dbFile,
      port,
      detached: o.detach,
      logFile: o.detach ? files.logFile : undefined,
      extraArgs: cfg.devServerArgs,
    });
    if (o.detach) {
      writeFileSync(files.pidFile, String(child.pid));
      await waitForPort('127.0.0.1', port);
      print(`Temporal dev server on 127.0.0.1:${port} (UI http://localhost:${port + 1000}), pid ${child.pid}, state ${files.dbFile}`);
      return;
    }
    await new Promise<void>((resolve) => child.once('exit', () => resolve()));
  });

/**
 * Reconcile the index with Temporal before reading it, so a session Temporal ended outside Keel's
 * code never shows as running. Without Temporal the index is shown as it is, with a warning.
 */
async function reconciling<T>(cfg: KeelConfig, fn: (client: KeelClient | undefined) => Promise<T>): Promise<T> {
  const client = await connectClient(cfg).catch((err: unknown) => {
    console.error(`keel: warning: ${(err as Error).message.split('. Fix:')[0]}; live statuses are not checked against Temporal`);
    return undefined;
  });
  try {
    return await fn(client);
  } finally {
    await client?.close();
  }
}

program
  .command('list')
  .description('recent sessions, newest first')
  .option('--limit <n>', 'how many', '20')
  .option('--json', 'print JSON')
  .action(async (o: { limit: string; json?: boolean }) => {
    const cfg = config();
    const sql = await connectDatabase(cfg);
    try {
      const rows = await reconciling(cfg, async (client) => {
        if (client) await reconcileLive(sql, client.temporal, { quietSec: 0, limit: Number(o.limit) });
        return listSessions(sql, { limit: Number(o.limit) });
      });
      if (o.json) return printJson(rows);
      if (rows.length === 0) return print('no sessions yet: try `npx keel demo`');
      for (const r of rows) {
        print(`${r.id.padEnd(30)} ${String(r.status).padEnd(10)} ${r.createdAt.toISOString()}  ${r.task.replace(/\s+/g, ' ').slice(0, 60)}`);
      }
    } finally {
      await sql.end({ timeout: 2 });
    }
  });

program
  .command('show')
  .description("a session's timeline from Postgres")
  .argument('<sessionId>')
  .option('--json', 'print the session and all its events as JSON')
  .action(async (id: string, o: { json?: boolean }) => {
    const cfg = config();
    const sql = await connectDatabase(cfg);
    try {
      const session = await reconciling(cfg, (client) => (client ? reconcileSession(sql, client.temporal, id) : getSession(sql, id)));
      if (!session) throw new SessionError(`no session ${id} in the event log`);
      const events = await getEvents(sql, id);
      if (o.json) return printJson({ session, steps: stepsOf(events), events });
      const view = operatorView(events);
      const status = session.status !== 'waiting' ? session.status : view.pending.length ? 'waiting for approval' : 'waiting';
      print(`${session.id}  ${status}  ${session.model}`, `task: ${session.task}`);
      const started = events.find((e) => e.type === 'session.started');
      const fork = started?.type === 'session.started' ? started.data.spec?.fork : undefined;
      if (fork) print(`forked from ${fork.from} at step ${fork.atStep}${fork.snapshot ? ` (files: snapshot ${fork.snapshot.slice(0, 12)})` : ''}`);
      for (const f of await forksOf(sql, id)) print(`forked as ${f.sessionId} at step ${f.atStep}`);
      const contract = events.find((e) => e.type === 'session.contract');
      if (contract?.type === 'session.contract') {
        const c = contract.data;
        print(
          `runs on: ${c.model.provider}:${c.model.model} (max ${c.model.maxOutputTokens} output tokens${c.model.contextTokens ? `, ${c.model.contextTokens} context` : ''}), ` +
            `${c.tools.length} tools, worker ${c.workerBuildId ?? 'unknown'}, Keel ${c.keelVersion}`,
        );
        if (c.sandbox) {
          print(
            `  sandbox ${c.sandbox.image} (${c.sandbox.imageId}), executor ${c.sandbox.executor}, ` +
              `${c.sandbox.limits.memoryMb} MiB / ${c.sandbox.limits.cpus} CPU / ${c.sandbox.limits.pidsLimit} pids, network ${c.sandbox.network}`,
          );
        }
      }
      for (const line of operatorLines(view, id)) print(line);
      print('');
      for (const line of formatTimeline(events)) print(line);
      const last = events.filter((e) => e.type === 'session.status').at(-1);
      const waitingForMessage = session.status === 'waiting' && view.pending.length === 0 && last?.type === 'session.status' && /message/.test(last.data.reason ?? '');
      if (waitingForMessage) print(`\nwaiting for a message: npx keel message ${id} "…", or npx keel close ${id}`);
    } finally {
      await sql.end({ timeout: 2 });
    }
  });

program
  .command('output')
  .description('the whole stored output of one tool call (as the model could read it with read_output)')
  .argument('<sessionId>')
  .argument('<callId>', 'the call id, as `keel show --json` lists it')
  .action(async (id: string, callId: string) => {
    const cfg = config();
    const sql = await connectDatabase(cfg);
    const store = openBlobStore(cfg);
    try {
      const found = await toolResultOf(sql, id, callId);
      if (!found) throw new SessionError(`session ${id} has no tool call ${callId}`);
      const ref = found.data.outputRef;
      writeBytes(ref ? await readBlob(store.blobs, ref.sha) : Buffer.from(`${found.data.output}\n`));
    } finally {
      store.close();
      await sql.end({ timeout: 2 });
    }
  });

program
  .command('diff')
  .description('what a step changed in the sandbox: files added, removed, modified, and text diffs')
  .argument('<sessionId>')
  .requiredOption('--step <n>', 'the model turn (step) to show')
  .option('--bundle <file>', 'read an exported bundle instead of the database and blob store')
  .option('--json', 'print JSON')
  .action(async (id: string, o: { step: string; bundle?: string; json?: boolean }) => {
    const step = Number(o.step);
    if (!Number.isInteger(step) || step < 1) throw new SessionError('--step takes a step number (1, 2, ...), as `keel show` lists them');
    const check = (events: readonly { type: string }[]) => {
      const steps = events.filter((e) => e.type === 'model.call').length;
      if (steps === 0) throw new SessionError(`no session ${id} in the event log`);
      if (step > steps) throw new SessionError(`session ${id} has ${steps} steps; --step takes 1 to ${steps}`);
    };
    if (o.bundle) {
      const bundle = await readBundle(o.bundle).catch((err: Error) => {
        throw new SessionError(err.message);
      });
      if (bundle.sessionId !== id) throw new SessionError(`the bundle holds session ${bundle.sessionId}, not ${id}`);
      check(bundle.events);
      await runDiff(id, step, { json: o.json, events: bundle.events, blobs: bundleBlobs(bundle) });
      return;
    }
    const cfg = config();
    const sql = await connectDatabase(cfg);
    const store = openBlobStore(cfg);
    try {
      const events = await getEvents(sql, id);
      check(events);
      await runDiff(id, step, { json: o.json, events, blobs: store.blobs });
    } finally {
      store.close();
      await sql.end({ timeout: 2 });
    }
  });

registerFiles(program, config);

program
  .command('wait')
  .description('block until the session ends (or, with --until-idle, waits for a person or a budget); exit codes below')
  .argument('<sessionId>')
  .option('--until-idle', 'return as soon as the session waits for a message or an approval (exit 6) or stops at a budget (exit 7), or when it ends')
  .option('--json', 'print the result as JSON')
  .addHelpText('after', '\nExit codes: 0 completed, 1 failed (or terminated / timed out in Temporal), 3 step limit, 4 cancelled, 6 waiting for a message or an approval, 7 stopped at a budget, 8 refused (tenant cap).')
  .action(async (id: string, o: { untilIdle?: boolean; json?: boolean }) => {
    const cfg = config();
    const client = await connectClient(cfg);
    try {
      if (o.untilIdle) {
        const r = await client.untilIdle(id);
        if (r.idle) {
          print(o.json ? JSON.stringify({ sessionId: id, ...r.state }) : `${id} ${describeIdle(id, r.state)}`);
          process.exitCode = exitCodeFor(r.state.status);
          return;
        }
        print(o.json ? JSON.stringify(r.result) : `${id} ${r.result.status}${r.result.summary ? `: ${r.result.summary}` : ''}`);
        process.exitCode = exitCodeFor(r.result.status);
        return;
      }
      // A plain wait keeps waiting, but says once why a session stands still.
      const told = new Set<string>();
      const watch = setInterval(() => {
        void client.status(id).then((st) => {
          const why = st.status === 'budget_exhausted' || (st.status === 'waiting' && st.waitingFor !== 'message') ? describeIdle(id, st) : undefined;
          if (why && !told.has(why)) {
            told.add(why);
            process.stderr.write(`${id} ${why}\n`);
          }
        }, () => undefined);
      }, 2000);
      const result = await client.result(id).finally(() => clearInterval(watch));
      print(o.json ? JSON.stringify(result) : `${id} ${result.status}${result.summary ? `: ${result.summary}` : ''}`);
      process.exitCode = exitCodeFor(result.status);
    } catch (err) {
      if (!(err instanceof WorkflowFailedError)) throw err;
      // Ended outside Keel's code (terminated, timed out): the index says why.
      const sql = await connectDatabase(cfg);
      try {
        const row = await reconcileSession(sql, client.temporal, id);
        const status = row?.status ?? 'failed';
        const reason = row?.result?.error ?? err.message;
        print(o.json ? JSON.stringify(row?.result ?? { sessionId: id, status, error: reason }) : `${id} ${status}: ${reason}`);
        process.exitCode = exitCodeFor(status as SessionStatus);
      } finally {
        await sql.end({ timeout: 2 });
      }
    } finally {
      await client.close();
    }
  });

/** One line on why a live session stands still, and what moves it on. */
function describeIdle(id: string, st: SessionState): string {
  if (st.status === 'budget_exhausted') {
    const e = st.exhausted;
    return `stopped at ${e ? `the ${e.budget} budget (${e.used} of ${e.limit})` : 'a budget'}: npx keel budget ${id} --add-…`;
  }
  if (st.waitingFor === 'approval') {
    const calls = (st.pendingApprovals ?? []).map((p) => `${p.callId} (${p.tool} ${p.summary})`).join(', ');
    return `waiting for approval of ${calls || 'a call'}: npx keel approve|deny ${id} <callId>`;
  }
  if (st.waitingFor === 'admission') return 'queued: its tenant runs its maximum of sessions';
  return `waiting for a message (step ${st.step})`;
}

program
  .command('close')
  .description('end a kept-alive session instead of waiting for its next message')
  .argument('<sessionId>')
  .action(async (id: string) => {
    await withClient(config(), (client) => client.closeSession(id));
    print(`close requested for ${id}; \`npx keel wait ${id}\` returns when it has ended`);
  });

program
  .command('message')
  .description('add a user message to a running session')
  .argument('<sessionId>')
  .argument('<text>')
  .action(async (id: string, text: string) => {
    await withClient(config(), (client) => client.message(id, text));
    print(`message sent to ${id}`);
  });

program
  .command('cancel')
  .description('stop a session: its container is removed and the reason recorded')
  .argument('<sessionId>')
  .option('--reason <text>', 'recorded in the event log', 'cancelled by user')
  .action(async (id: string, o: { reason: string }) => {
    await withClient(config(), (client) => client.cancel(id, o.reason));
    print(`cancel requested for ${id}; \`npx keel wait ${id}\` returns when it has stopped`);
  });

program
  .command('doctor')
  .description('check Temporal, Docker, Postgres, the sandbox image and model configuration')
  .option('--json', 'print JSON')
  .action(async (o: { json?: boolean }) => {
    const checks = await runDoctor(config());
    if (o.json) printJson({ ok: checks.every((c) => c.level !== 'error'), checks });
    else printChecks(checks);
    process.exitCode = checks.some((c) => c.level === 'error') ? 1 : 0;
  });

registerImage(program, config);

program
  .command('reap')
  .description("remove sandbox containers of this host whose session has ended or does not exist")
  .option('--min-age <sec>', 'leave younger containers alone', '120')
  .action(async (o: { minAge: string }) => {
    const cfg = config();
    const docker = await connectDocker(cfg);
    const client = await connectClient(cfg);
    try {
      const reaped = await reapOnce({ docker, client: client.temporal, hostId: cfg.hostId, minAgeSec: Number(o.minAge) });
      print(reaped.length ? `removed the sandboxes of ${reaped.join(', ')}` : 'nothing to remove');
    } finally {
      await client.close();
    }
  });

program
  .command('migrate')
  .description("apply the database migrations this Keel needs, as the tables' owner (KEEL_DATABASE_OWNER_URL)")
  .action(async () => {
    const cfg = config();
    const sql = connect(cfg.databaseOwnerUrl);
    try {
      const applied = await migrate(sql);
      print(applied.length ? `applied migrations ${applied.join(', ')}` : 'the schema is up to date');
    } catch (err) {
      throw new ServiceError('Postgres', `cannot migrate ${redactUrl(cfg.databaseOwnerUrl)} (${(err as Error).message})`, 'set KEEL_DATABASE_OWNER_URL to the role that owns the tables (npm run setup creates keel_owner)');
    } finally {
      await sql.end({ timeout: 2 });
    }
  });

program
  .command('gc')
  .description('remove blobs (snapshots, stored outputs) that no retained session references')
  .option('--retention-days <n>', 'sessions that ended longer ago than this lose their blobs (default KEEL_RETENTION_DAYS, 30)')
  .option('--grace <sec>', 'never remove a blob written or kept this recently (default KEEL_GC_GRACE_SEC, 86400)')
  .option('--dry-run', 'count what would go, remove nothing')
  .option('--json', 'print JSON')
  .action(async (o: { retentionDays?: string; grace?: string; dryRun?: boolean; json?: boolean }) => {
    const cfg = config();
    const sql = await connectDatabase(cfg);
    const store = openBlobStore(cfg);
    try {
      const report = await collectGarbage(sql, store.blobs, {
        retentionDays: o.retentionDays !== undefined ? Number(o.retentionDays) : cfg.retentionDays,
        graceSec: o.grace !== undefined ? Number(o.grace) : cfg.gcGraceSec,
        dryRun: Boolean(o.dryRun),
      });
      if (o.json) return printJson(report);
      print(
        `${report.retainedSessions} sessions retained, ${report.expiredSessions} past retention; ${report.referenced} blobs referenced of ${report.listed} stored`,
        `${o.dryRun ? 'would remove' : 'removed'} ${report.removed} blobs (${report.removedBytes} bytes); ${report.young} unreferenced but within the grace period`,
      );
    } finally {
      store.close();
      await sql.end({ timeout: 2 });
    }
  });

program
  .command('stop-dev')
  .description('stop a dev server started with `keel dev --detach`')
  .action(() => {
    const files = devServerFiles(config().stateDir);
    if (!existsSync(files.pidFile)) return print('no detached dev server recorded');
    const pid = Number(readFileSync(files.pidFile, 'utf8'));
    try {
      process.kill(pid, 'SIGTERM');
      print(`stopped Temporal dev server (pid ${pid})`);
    } catch {
      print(`Temporal dev server (pid ${pid}) was not running`);
    }
    unlinkSync(files.pidFile);
  });

registerAudit(program, config);
registerOperator(program, config);
registerEval(program, config);
registerServe(program, config);

export async function main(argv = process.argv): Promise<void> {
  // The SDK's own logs would drown the progress output (a retried activity logs a warning with its
  // task token each time; the status line says it in one line): --verbose keeps them. `worker` and
  // `serve` install their own logger once their config is read (JSON by default, KEEL_LOG_FORMAT).
  const command = argv.slice(2).find((a) => !a.startsWith('-'));
  try {
    if (command !== 'worker' && command !== 'serve') installLogger(argv.includes('--verbose') ? 'INFO' : 'ERROR');
    await program.parseAsync(argv);
    // A detached `keel run` exits right after starting its session: send the StartWorkflow span first.
    await stopTracing();
  } catch (err) {
    process.exitCode = 2;
    if (process.env.KEEL_DEBUG) console.error(err);
    else if (err instanceof ServiceError || err instanceof SessionError) console.error(`keel: ${err.message}`);
    else console.error(`keel: ${(err as Error).message?.split('\n')[0] ?? String(err)} (KEEL_DEBUG=1 for details)`);
  }
}
