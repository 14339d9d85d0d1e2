/**
 * Auditing a session on real Temporal, Docker and Postgres, as someone who does
 * not trust the operator: every kind of tampering with the log (as a Postgres
 * superuser, triggers off) or the blob store is detected and named; histories
 * outlive Temporal; replay catches a workflow change; an exported bundle verifies
 * with nothing running.
 *
 *   node --import tsx --test test/integration/audit.test.ts
 */
import '../helpers/quiet';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Docker from 'dockerode';
import { KeelClient } from '../../client';
import { archiveSession, currentWorkflows, liveEvidence, loadHistories, replaySession, verifySession, type VerifyReport } from '../../audit';
import type { DirBlobStore } from '../../blobs';
import { demoSpec } from '../../cli/sessions';
import { eventsOfType } from '../../common/events';
import { readManifest } from '../../common/manifest';
import { planFork } from '../../inspect';
import type { ScriptTurn, SessionSpec } from '../../common/types';
import { chainHash, getChainedEvents, getEvents, type Sql } from '../../store';
import { runCli } from '../helpers/cli';
import { ensureSandboxImage, uniqueId } from '../helpers/env';
import { startStack, type Stack } from '../helpers/stack';
import { asSuperuser, tamperEvents } from '../helpers/superuser';
import type { TestTemporal } from '../helpers/temporal';

const DB = new URL(process.env.DATABASE_URL ?? 'postgres://keel:keel@localhost:5432/keel_test').pathname.slice(1);
let stack: Stack;
let temporal: TestTemporal;
let client: KeelClient;
let sql: Sql;
let blobs: DirBlobStore;

const BIG = 'seq 1 3000';
const script: ScriptTurn[] = [
  { text: 'Writing the module.', toolCalls: [{ name: 'write_file', input: { path: 'app.py', content: 'print("hello")\n' } }] },
  { text: 'Running it, and listing a lot.', toolCalls: [{ name: 'shell', input: { command: `python3 app.py && ${BIG}` } }] },
  { text: 'All done: app.py prints hello.' },
];
const spec: SessionSpec = { task: 'audit me', model: { provider: 'scripted', model: 'audit', script } };

before(async () => {
  await ensureSandboxImage(new Docker());
  stack = await startStack('audit-host');
  ({ temporal, client, sql } = stack);
  blobs = stack.blobs as DirBlobStore;
});

after(async () => {
  await stack?.stop();
});

async function verify(id: string): Promise<VerifyReport> {
  const histories = await loadHistories(sql, client.temporal, blobs, id);
  return verifySession(liveEvidence({ sessionId: id, events: await getChainedEvents(sql, id), ...(histories ? { histories: histories.runs } : {}), blobs }));
}

async function session(): Promise<string> {
  const id = await client.start(spec, { sessionId: uniqueId('audit') });
  const result = await client.result(id);
  assert.equal(result.status, 'completed', result.error);
  return id;
}

/** Tamper, check what verify says, and put the log back as it was. */
async function tampered(id: string, statements: string, expect: (r: VerifyReport) => void): Promise<void> {
  const backup = `audit_backup_${createHash('sha256').update(id + statements).digest('hex').slice(0, 12)}`;
  asSuperuser(DB, `create table ${backup} as select * from events where session_id = '${id}';`);
  try {
    tamperEvents(DB, statements);
    const report = await verify(id);
    assert.equal(report.ok, false, 'tampering was detected');
    expect(report);
  } finally {
    tamperEvents(DB, `delete from events where session_id = '${id}'; insert into events select * from ${backup};`);
    asSuperuser(DB, `drop table ${backup};`);
  }
  assert.equal((await verify(id)).ok, true, 'restored, the record verifies again');
}

/** SQL that rewrites a session's chain consistently from its current content, as a careful attacker would. */
async function rechain(id: string): Promise<string> {
  const events = await getChainedEvents(sql, id);
  let prev: string | undefined;
  const updates: string[] = [];
  for (const e of events) {
    const hash = chainHash(prev, e);
    updates.push(`update events set hash = '${hash}', prev_hash = ${prev ? `'${prev}'` : 'null'} where session_id = '${id}' and seq = ${e.seq};`);
    prev = hash;
  }
  return updates.join('\n');
}

describe('a completed session', () => {
  let id: string;
  before(async () => {
    id = await session();
  });

  it('verifies: chain intact, every chain head matches the history, results match, blobs re-hash', async () => {
    const r = await verify(id);
    assert.deepEqual(r.problems, []);
    assert.equal(r.ok, true);
    assert.equal(r.chained, r.events, 'every event is chained');
    assert.ok(r.anchors >= 5, `${r.anchors} chain heads in the history`);
    assert.ok(r.compared >= 5, `${r.compared} results compared`);
    assert.ok(r.blobs >= 3, `${r.blobs} blobs re-hashed (a snapshot, its files, a stored output)`);
    const results = eventsOfType(await getEvents(sql, id), 'tool.result');
    assert.ok(results.some((e) => e.data.outputRef), 'the big output is stored by reference');
  });

  it('names an edited event', async () => {
    const seq = eventsOfType(await getEvents(sql, id), 'tool.result')[1]?.seq;
    await tampered(id, `update events set data = jsonb_set(data, '{output}', '"all 42 tests passed"') where session_id = '${id}' and seq = ${seq};`, (r) => {
      assert.equal(r.problems[0]?.kind, 'changed');
      assert.equal(r.problems[0]?.seq, seq);
      assert.match(r.problems[0]?.message ?? '', new RegExp(`event ${seq} \\(tool.result\\) changed`));
    });
  });

  it('names an event edited with the whole chain recomputed, from the heads in the history', async () => {
    const seq = eventsOfType(await getEvents(sql, id), 'tool.result')[1]?.seq ?? 0;
    const edit = `update events set data = jsonb_set(data, '{output}', '"all 42 tests passed"') where session_id = '${id}' and seq = ${seq};`;
    // Work out the consistent chain on a scratch copy of the edit, then apply both at once.
    const backup = `audit_rechain_${Date.now()}`;
    asSuperuser(DB, `create table ${backup} as select * from events where session_id = '${id}';`);
    tamperEvents(DB, edit);
    const rewrite = await rechain(id);
    tamperEvents(DB, `delete from events where session_id = '${id}'; insert into events select * from ${backup};`);
    asSuperuser(DB, `drop table ${backup};`);
    await tampered(id, `${edit}\n${rewrite}`, (r) => {
      assert.ok(r.problems.some((p) => p.kind === 'rewritten'), 'the chain heads in the history disagree');
      const named = r.problems.find((p) => p.kind === 'changed');
      assert.equal(named?.seq, seq, 'the content check names the event');
      assert.match(named?.message ?? '', /output: history has "hello 1 2 3[^,]*, the log has "all 42 tests passed"/);
    });
  });

  it('names a changed model turn (the recorded transcript), chain recomputed', async () => {
    const call = eventsOfType(await getEvents(sql, id), 'model.call')[0];
    const edit = `update events set data = jsonb_set(data, '{text}', '"I will delete the repository."') where session_id = '${id}' and seq = ${call?.seq};`;
    const backup = `audit_rechain_t_${Date.now()}`;
    asSuperuser(DB, `create table ${backup} as select * from events where session_id = '${id}';`);
    tamperEvents(DB, edit);
    const rewrite = await rechain(id);
    tamperEvents(DB, `delete from events where session_id = '${id}'; insert into events select * from ${backup};`);
    asSuperuser(DB, `drop table ${backup};`);
    await tampered(id, `${edit}\n${rewrite}`, (r) => {
      const named = r.problems.find((p) => p.kind === 'changed');
      assert.equal(named?.seq, call?.seq);
      assert.match(named?.message ?? '', /model\.call, step 1\) changed: text: history has "Writing the module\.", the log has "I will delete the repository\."/);
    });
  });

  it('names a removed event', async () => {
    const seq = eventsOfType(await getEvents(sql, id), 'tool.call')[0]?.seq;
    await tampered(id, `delete from events where session_id = '${id}' and seq = ${seq};`, (r) => {
      assert.equal(r.problems[0]?.kind, 'removed');
      assert.equal(r.problems[0]?.seq, seq);
      assert.match(r.problems[0]?.message ?? '', new RegExp(`event ${seq} removed`));
    });
  });

  it('names an inserted event, even with a correct chain hash', async () => {
    const events = await getChainedEvents(sql, id);
    const last = events[events.length - 1];
    const seq = (last?.seq ?? 0) + 1;
    const data = { step: 3, callId: 'forged', name: 'shell', ok: true, output: 'all 42 tests passed' };
    const hash = chainHash(last?.hash ?? undefined, { sessionId: id, seq, type: 'tool.result', data });
    await tampered(
      id,
      `insert into events (session_id, seq, type, data, hash, prev_hash) values ('${id}', ${seq}, 'tool.result', '${JSON.stringify(data)}', '${hash}', '${last?.hash}');`,
      (r) => {
        assert.equal(r.problems[0]?.kind, 'inserted');
        assert.equal(r.problems[0]?.seq, seq);
        assert.match(r.problems[0]?.message ?? '', /not anchored in the Temporal history/);
      },
    );
  });

  it('names reordered events', async () => {
    const [a, b] = eventsOfType(await getEvents(sql, id), 'tool.result');
    await tampered(
      id,
      `update events set seq = -1 where session_id = '${id}' and seq = ${a?.seq};
       update events set seq = ${a?.seq} where session_id = '${id}' and seq = ${b?.seq};
       update events set seq = ${b?.seq} where session_id = '${id}' and seq = -1;`,
      (r) => {
        assert.equal(r.problems[0]?.seq, a?.seq);
        assert.ok(['reordered', 'changed'].includes(r.problems[0]?.kind ?? ''), r.problems[0]?.message);
      },
    );
  });

  it('names a changed blob (a stored output)', async () => {
    const ref = eventsOfType(await getEvents(sql, id), 'tool.result').find((e) => e.data.outputRef)?.data.outputRef;
    assert.ok(ref);
    const path = blobs.pathOf(ref.sha);
    const original = readFileSync(path);
    try {
      writeFileSync(path, Buffer.concat([original.subarray(0, 10), Buffer.from('X'), original.subarray(11)]));
      const r = await verify(id);
      assert.equal(r.ok, false);
      assert.equal(r.problems[0]?.kind, 'blob-changed');
      assert.match(r.problems[0]?.message ?? '', new RegExp(`blob ${ref.sha.slice(0, 12)} .* changed`));
    } finally {
      writeFileSync(path, original);
    }
    assert.equal((await verify(id)).ok, true);
  });
});

describe('histories that outlive Temporal', () => {
  it('archives the history, and verify and replay use the archive once Temporal has deleted it', { timeout: 300_000 }, async () => {
    const id = await session();
    assert.equal(await archiveSession(sql, client.temporal, blobs, id), true);
    assert.equal(await archiveSession(sql, client.temporal, blobs, id), false, 'once');
    const archived = eventsOfType(await getEvents(sql, id), 'session.archived')[0];
    assert.ok(archived?.data.ref);
    const runs = (await loadHistories(sql, client.temporal, blobs, id))?.runs ?? [];
    for (const run of runs) {
      await client.temporal.workflowService.deleteWorkflowExecution({ namespace: 'default', workflowExecution: { workflowId: id, runId: run.runId } });
    }
    // Temporal deletes in the background (about half a minute on the dev server).
    for (let i = 0; i < 240; i++) {
      const gone = await client.temporal.workflow.getHandle(id).describe().then(() => false, () => true);
      if (gone) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const loaded = await loadHistories(sql, client.temporal, blobs, id);
    assert.equal(loaded?.from, 'archive');
    const r = await verify(id);
    assert.deepEqual(r.problems, []);
    assert.ok(r.anchors > 0, 'anchors checked against the archived history');
    assert.ok(r.notes.some((n) => /session\.archived\) was written by the archiver/.test(n)), 'the archive event is reported as not anchored');
    const replayed = await replaySession(id, loaded?.runs ?? []);
    assert.equal(replayed.ok, true, replayed.failure?.message);
  });
});

describe('replay as a deploy gate', () => {
  it('passes on today\'s code and names the first command a changed workflow would take differently', async () => {
    const id = await session();
    const runs = (await loadHistories(sql, client.temporal, blobs, id))?.runs ?? [];
    assert.equal((await replaySession(id, runs)).ok, true);
    const today = await currentWorkflows();
    const changed = { code: today.code.replaceAll('provisionSandbox', 'provisionVirtualMachine') };
    assert.notEqual(changed.code, today.code);
    const outcome = await replaySession(id, runs, changed);
    assert.equal(outcome.ok, false);
    assert.match(outcome.failure?.message ?? '', /provisionVirtualMachine/);
    assert.match(outcome.failure?.message ?? '', /patched\(\)/);
    const cli = await runCli(['audit', 'replay', id], { DATABASE_URL: process.env.DATABASE_URL, TEMPORAL_ADDRESS: temporal.address });
    assert.equal(cli.code, 0, cli.stderr + cli.stdout);
    assert.match(cli.stdout, new RegExp(`OK +${id}`));
  });
});

describe('an offline bundle', () => {
  it('verifies with no service reachable (its Temporal stopped, Postgres and blobs pointed nowhere), and a changed byte is named', async () => {
    const id = await session();
    const dir = mkdtempSync(join(tmpdir(), 'keel-bundle-'));
    const file = join(dir, `${id}.jsonl`);
    const exported = await runCli(['export', id, file], { DATABASE_URL: process.env.DATABASE_URL, TEMPORAL_ADDRESS: temporal.address });
    assert.equal(exported.code, 0, exported.stderr);
    const nowhere = { DATABASE_URL: 'postgres://keel:keel@127.0.0.1:1/none', TEMPORAL_ADDRESS: '127.0.0.1:1', KEEL_BLOB_DIR: join(dir, 'no-blobs') };
    // The shared Postgres stays up for other suites; the CLI is pointed where nothing answers.
    await temporal.down();
    try {
      const ok = await runCli(['audit', 'verify', '--bundle', file], nowhere);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      assert.match(ok.stdout, new RegExp(`^OK ${id}`));
      const diff = await runCli(['diff', id, '--step', '1', '--bundle', file], nowhere);
      assert.equal(diff.code, 0, diff.stderr);
      assert.match(diff.stdout, /A \/workspace\/app\.py/);

      // One byte of a stored blob, inside the bundle.
      const text = readFileSync(file, 'utf8');
      const at = text.lastIndexOf('"data":"') + 20;
      const flipped = `${text.slice(0, at)}${text[at] === 'A' ? 'B' : 'A'}${text.slice(at + 1)}`;
      writeFileSync(file, flipped);
      const bad = await runCli(['audit', 'verify', '--bundle', file], nowhere);
      assert.equal(bad.code, 1, bad.stdout + bad.stderr);
      assert.match(bad.stdout, /^FAIL .*blob [0-9a-f]{12} .* changed/);
    } finally {
      await temporal.up();
    }
  });
});

describe('fork', () => {
  it('forks the demo session at step 3: same files there, its own changes, the original untouched, each names the other', { timeout: 300_000 }, async () => {
    const original = await client.start(demoSpec(), { sessionId: uniqueId('demo') });
    assert.equal((await client.result(original)).status, 'completed');
    const before = await getChainedEvents(sql, original);
    const fork = planFork(original, before, 3);
    assert.ok(fork.snapshot, 'the demo had changed files by step 3');

    // The fork's own script: hash its workspace, change it, and stop.
    const digest = "cd /workspace && find . -type f -not -path './.git/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-64";
    const script: ScriptTurn[] = [
      { toolCalls: [{ name: 'shell', input: { command: digest } }] },
      { toolCalls: [{ name: 'write_file', input: { path: 'stats/FORKED.md', content: 'a different path\n' } }] },
      { text: 'forked and changed' },
    ];
    const started = (await getEvents(sql, original)).find((e) => e.type === 'session.started');
    const spec = started?.type === 'session.started' ? started.data.spec : undefined;
    assert.ok(spec);
    const forkId = await client.start(
      { ...spec, model: { provider: 'scripted', model: 'fork', script }, fork: { ...fork, modelTurnOffset: 3 }, messages: ['take another path'] },
      { sessionId: uniqueId('fork') },
    );
    const result = await client.result(forkId);
    assert.equal(result.status, 'completed', result.error);

    // The workspace at the fork point is the original's at step 3, file for file.
    const manifest = (await readManifest(blobs, fork.snapshot))!.manifest;
    const lines = manifest.entries
      .filter((e) => e.type === 'file' && e.path.startsWith('/workspace/') && !e.path.startsWith('/workspace/.git/'))
      .map((e) => ({ path: `.${e.path.slice('/workspace'.length)}`, sha: e.type === 'file' ? e.sha : '' }))
      .sort((a, b) => (a.path < b.path ? -1 : 1))
      .map((e) => `${e.sha}  ${e.path}\n`)
      .join('');
    const expected = createHash('sha256').update(lines).digest('hex');
    const forkEvents = await getEvents(sql, forkId);
    const own = eventsOfType(forkEvents, 'tool.result').filter((e) => !e.data.copiedFrom);
    assert.equal(own[0]?.data.output.trim(), expected, "the fork's files at the fork point have the original's digest at step 3");

    // The transcript up to step 3 was copied (each copy names its source); the model saw it.
    const copied = forkEvents.filter((e) => (e.data as { copiedFrom?: unknown }).copiedFrom);
    assert.equal(copied.length, before.filter((e) => ['message.user', 'model.call', 'tool.call', 'tool.result'].includes(e.type) && e.seq <= fork.throughSeq).length);
    assert.ok(eventsOfType(forkEvents, 'message.user').some((e) => e.data.text === 'take another path'));

    // Its later changes are its own: the original's log and snapshots are as they were, and both verify.
    const after = await getChainedEvents(sql, original);
    assert.deepEqual(after.map((e) => e.hash), before.map((e) => e.hash), 'the original is untouched');
    const forkSnapshots = own.flatMap((e) => (e.data.snapshot ? [e.data.snapshot.id] : []));
    const originalSnapshots = new Set(eventsOfType(after, 'tool.result').flatMap((e) => (e.data.snapshot ? [e.data.snapshot.id] : [])));
    assert.ok(forkSnapshots.length > 0 && forkSnapshots.every((s) => !originalSnapshots.has(s)));
    assert.equal((await verify(forkId)).ok, true, 'the fork verifies, its copied transcript anchored by the copy');
    assert.equal((await verify(original)).ok, true);

    // Each session's show names the other.
    const cliEnv = { DATABASE_URL: process.env.DATABASE_URL, TEMPORAL_ADDRESS: temporal.address };
    const showFork = await runCli(['show', forkId], cliEnv);
    assert.match(showFork.stdout, new RegExp(`forked from ${original} at step 3`));
    const showOriginal = await runCli(['show', original], cliEnv);
    assert.match(showOriginal.stdout, new RegExp(`forked as ${forkId} at step 3`));
    assert.match(showOriginal.stdout, /runs on: scripted:demo .* tools, worker keel-[0-9a-f]{12}/, 'the runtime contract');
    assert.match(showOriginal.stdout, /sandbox keel-sandbox:[0-9a-f]{12} \(sha256:[0-9a-f]{64}\), executor [0-9a-f]{12}/);
  });
});
