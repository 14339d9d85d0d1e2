/** `keel run --workspace` (storing the seed) and `keel files` (the workspace back out, or its change as a patch). */
import type { Command } from 'commander';
import { SessionError } from '../common/errors';
import type { WorkspaceSeed } from '../common/types';
import { getEvents } from '../store';
import type { KeelConfig } from '../workers/config';
import { connectDatabase, openBlobStore } from '../workers/services';
import { uploadWorkspace } from '../client/workspace';
import { workspaceAt, workspaceGitDiff, writeWorkspaceDir, writeWorkspaceTar } from '../workspace';
import { print, printJson } from './terminal';

/** Store `path` in the blob store the sandbox hosts read, as the seed of a session. */
export async function seedWorkspace(cfg: KeelConfig, path: string, ref?: string): Promise<WorkspaceSeed & { source: string }> {
  const store = openBlobStore(cfg);
  try {
    return await uploadWorkspace(path, store.blobs, ref === undefined ? {} : { ref });
  } finally {
    store.close();
  }
}

export function registerFiles(program: Command, config: () => KeelConfig): void {
  program
    .command('files')
    .description("a session's /workspace after a step, from its snapshots (no container): into a directory or tar file, or as a patch from the seed")
    .argument('<sessionId>')
    .option('--step <n>', 'after this step (0: the seed, before the first step; default: the last step)')
    .option('--out <dir|file.tar>', 'write the files here: a new or empty directory, or a .tar / .tar.gz file')
    .option('--git-diff', 'print the change from the seed (or an empty workspace) as a unified diff, .git left out')
    .option('--json', 'print what was written as JSON')
    .action(async (id: string, o: { step?: string; out?: string; gitDiff?: boolean; json?: boolean }) => {
      if (!o.out && !o.gitDiff) throw new SessionError('say where the files go: --out <dir|file.tar>, or --git-diff to print the change');
      if (o.out && o.gitDiff) throw new SessionError('give --out or --git-diff, not both');
      let step: number | undefined;
      if (o.step !== undefined) {
        step = Number(o.step);
        if (!/^\d+$/.test(o.step)) throw new SessionError(`--step takes a step number (0, 1, 2, ...), not ${JSON.stringify(o.step)}`);
      }
      const cfg = config();
      const sql = await connectDatabase(cfg);
      const store = openBlobStore(cfg);
      try {
        const events = await getEvents(sql, id);
        if (events.length === 0) throw new SessionError(`no session ${id} in the event log`);
        const point = workspaceAt(id, events, step);
        if (o.gitDiff) {
          process.stdout.write(await workspaceGitDiff(store.blobs, point.seed, point.snapshot));
          return;
        }
        const out = o.out as string;
        const files = /\.(tar|tar\.gz|tgz)$/i.test(out)
          ? await writeWorkspaceTar(store.blobs, point.snapshot, out)
          : await writeWorkspaceDir(store.blobs, point.snapshot, out);
        const result = { sessionId: id, step: point.step, steps: point.steps, snapshot: point.snapshot ?? null, out, files };
        if (o.json) printJson(result);
        else print(`wrote /workspace of ${id} after step ${point.step} of ${point.steps} (${point.snapshot ? `snapshot ${point.snapshot.slice(0, 12)}` : 'empty: nothing written yet'}): ${files} files to ${out}`);
      } finally {
        store.close();
        await sql.end({ timeout: 2 });
      }
    });
}
