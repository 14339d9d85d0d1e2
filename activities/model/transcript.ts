/**
 * The transcript a model call sees, read back from the event log: the event log
 * is the transcript. Model turns (`model.call`), tool results (`tool.result`) and
 * user messages (`message.user`) in seq order; stored contents are fetched from
 * the blob store by reference. The task (from `session.started`) is pinned in
 * front by the caller.
 */
import type { BlobStore, ContentCache } from '../../blobs';
import type { EventRow } from '../../common/events';
import type { TranscriptEntry, WindowCall } from '../../common/context';
import type { ContentRef, ToolCall } from '../../common/types';

interface Fetcher {
  blobs: BlobStore;
  cache: ContentCache;
}

async function text(f: Fetcher, inline: string | undefined, ref: ContentRef | undefined): Promise<string | undefined> {
  return ref ? f.cache.text(f.blobs, ref) : inline;
}

/** A call as the model made it: the whole input, fetched when it was stored. */
async function wholeCall(f: Fetcher, c: ToolCall): Promise<WindowCall> {
  if (!c.inputRef) return { id: c.id, name: c.name, input: c.input };
  const raw = await f.cache.text(f.blobs, c.inputRef);
  let input: unknown = raw;
  try {
    input = JSON.parse(raw);
  } catch {
    // Arguments that were not JSON were stored as the model sent them.
  }
  return { id: c.id, name: c.name, input };
}

/** Transcript entries of `events` (any order; sorted here), every content whole. */
export async function transcriptOf(events: readonly EventRow[], f: Fetcher): Promise<TranscriptEntry[]> {
  const out: TranscriptEntry[] = [];
  for (const e of [...events].sort((a, b) => a.seq - b.seq)) {
    switch (e.type) {
      case 'message.user':
        out.push({ kind: 'user', seq: e.seq, text: e.data.text });
        break;
      case 'model.call': {
        const t = await text(f, e.data.text, e.data.textRef);
        const calls = await Promise.all(e.data.toolCalls.map((c) => wholeCall(f, c)));
        out.push({ kind: 'assistant', seq: e.seq, ...(t ? { text: t } : {}), toolCalls: calls });
        break;
      }
      case 'tool.result': {
        const output = (await text(f, e.data.output, e.data.outputRef)) ?? '';
        out.push({ kind: 'tool', seq: e.seq, callId: e.data.callId, name: e.data.name, ok: e.data.ok, output, stored: Boolean(e.data.outputRef) });
        break;
      }
      default:
        break;
    }
  }
  return out;
}
