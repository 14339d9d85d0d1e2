/**
 * Offline bundles: one file holding everything needed to check a session with
 * no database, no Temporal server and no network. `keel export <id> <file>`
 * writes it; `keel audit verify --bundle` and `keel diff --bundle` read it.
 *
 * Format (version {@link BUNDLE_FORMAT}): JSON lines, gzip-compressed when the
 * file name ends in `.gz`. The first line is the header
 * `{"kind":"keel-bundle","format":1,"sessionId":…,"exportedAt":…}`; then one line
 * per event (`kind: "event"`, with its chain hashes), per workflow run
 * (`kind: "history"`), and per blob the events reference (`kind: "blob"`,
 * base64): stored outputs, arguments and texts, history archives, snapshot
 * manifests and every file they list. Readers accept every format up to the
 * newest they know. Nothing in a bundle is trusted: verify recomputes every hash.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { createInterface } from 'node:readline';
import { BlobMissingError, readBlob, type BlobReader } from '../blobs';
import type { EventType } from '../common/events';
import { addReferences } from '../common/manifest';
import type { ChainedEventRow } from '../store';
import { referencesOf } from './gc';
import { historyFromJson, historyToJson, type History } from './history';

export const BUNDLE_FORMAT = 1;

type Line =
  | { kind: 'keel-bundle'; format: number; sessionId: string; exportedAt: string }
  | { kind: 'event'; seq: number; type: EventType; at: string; data: unknown; hash: string | null; prevHash: string | null }
  | { kind: 'history'; runId: string; history: unknown }
  | { kind: 'blob'; sha: string; data: string };

export interface Bundle {
  sessionId: string;
  exportedAt: string;
  events: ChainedEventRow[];
  histories: Array<{ runId: string; history: History }>;
  blobs: Map<string, Buffer>;
}

/** The blobs a bundle holds, as a read-only store (for `keel diff --bundle`). */
export function bundleBlobs(bundle: Bundle): BlobReader {
  return {
    async get(sha: string) {
      const data = bundle.blobs.get(sha);
      if (!data) throw new BlobMissingError(sha, 'the bundle');
      return Readable.from([data]);
    },
    async getManifest(id: string) {
      return bundle.blobs.get(id)?.toString('utf8');
    },
  };
}

/** Write a bundle of a session. Blobs the store lacks are left out (verify will name them). */
export async function writeBundle(args: {
  file: string;
  sessionId: string;
  events: ChainedEventRow[];
  histories: Array<{ runId: string; history: History }>;
  blobs: BlobReader;
}): Promise<{ events: number; runs: number; blobs: number; missing: number }> {
  const lines: Line[] = [
    { kind: 'keel-bundle', format: BUNDLE_FORMAT, sessionId: args.sessionId, exportedAt: new Date().toISOString() },
    ...args.events.map((e): Line => ({ kind: 'event', seq: e.seq, type: e.type, at: e.at.toISOString(), data: e.data, hash: e.hash, prevHash: e.prevHash })),
    ...args.histories.map((r): Line => ({ kind: 'history', runId: r.runId, history: historyToJson(r.history) })),
  ];
  const counts = { events: args.events.length, runs: args.histories.length, blobs: 0, missing: 0 };
  const wanted = new Set<string>();
  const manifests = new Set<string>();
  for (const e of args.events) {
    const refs = referencesOf(e);
    for (const sha of refs.blobs) wanted.add(sha);
    for (const id of refs.snapshots) manifests.add(id);
  }
  // Each snapshot's objects and files; one the store lacks (or lacks a tree of) is left out, and verify names it.
  for (const id of manifests) await addReferences(args.blobs, id, wanted).catch(() => false);
  async function* all(): AsyncGenerator<string> {
    for (const line of lines) yield `${JSON.stringify(line)}\n`;
    for (const sha of wanted) {
      let data: Buffer;
      try {
        data = await readBlob(args.blobs, sha);
      } catch (err) {
        if (!(err instanceof BlobMissingError)) throw err;
        counts.missing++;
        continue;
      }
      counts.blobs++;
      yield `${JSON.stringify({ kind: 'blob', sha, data: data.toString('base64') } satisfies Line)}\n`;
    }
  }
  const out = createWriteStream(args.file);
  if (args.file.endsWith('.gz')) await pipeline(Readable.from(all()), createGzip(), out);
  else await pipeline(Readable.from(all()), out);
  return counts;
}

/** Read a bundle. Throws naming the line when it is not a bundle or a line is damaged. */
export async function readBundle(file: string): Promise<Bundle> {
  const input = file.endsWith('.gz') ? createReadStream(file).pipe(createGunzip()) : createReadStream(file);
  const bundle: Bundle = { sessionId: '', exportedAt: '', events: [], histories: [], blobs: new Map() };
  let n = 0;
  for await (const text of createInterface({ input, crlfDelay: Infinity })) {
    n++;
    if (!text.trim()) continue;
    let line: Line;
    try {
      line = JSON.parse(text) as Line;
    } catch (err) {
      throw new Error(`bundle ${file} is damaged at line ${n}: ${(err as Error).message}`);
    }
    if (n === 1) {
      if (line.kind !== 'keel-bundle') throw new Error(`${file} is not a Keel bundle (its first line is not a keel-bundle header)`);
      if (line.format > BUNDLE_FORMAT) throw new Error(`bundle format ${line.format} is newer than this Keel reads (${BUNDLE_FORMAT})`);
      bundle.sessionId = line.sessionId;
      bundle.exportedAt = line.exportedAt;
      continue;
    }
    switch (line.kind) {
      case 'event':
        bundle.events.push({ sessionId: bundle.sessionId, seq: line.seq, type: line.type, at: new Date(line.at), data: line.data, hash: line.hash, prevHash: line.prevHash } as ChainedEventRow);
        break;
      case 'history':
        bundle.histories.push({ runId: line.runId, history: historyFromJson(line.history) });
        break;
      case 'blob':
        bundle.blobs.set(line.sha, Buffer.from(line.data, 'base64'));
        break;
      default:
        throw new Error(`bundle ${file} line ${n}: unknown kind ${JSON.stringify((line as { kind?: unknown }).kind)}`);
    }
  }
  if (!bundle.sessionId) throw new Error(`${file} is empty`);
  return bundle;
}
