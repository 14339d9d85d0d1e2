/**
 * Content that does not belong in workflow history (large tool outputs, tool
 * arguments, model text) goes to the blob store once, by sha256; history and
 * events carry a {@link ContentRef} and a short preview instead.
 */
import { createHash } from 'node:crypto';
import { INLINE_CONTENT_BYTES } from '../common/defaults';
import type { ContentRef } from '../common/types';
import { readBlob, type BlobStore } from './store';

/** Store bytes (or UTF-8 text) and return its reference. Idempotent: the same content is stored once. */
export async function putContent(blobs: BlobStore, content: string | Buffer, extra: { cutBytes?: number } = {}): Promise<ContentRef> {
  const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  const sha = createHash('sha256').update(data).digest('hex');
  await blobs.put(sha, data);
  return { sha, bytes: data.length, ...(extra.cutBytes ? { cutBytes: extra.cutBytes } : {}) };
}

/** Whether `text` is small enough to stay inline. */
export function fitsInline(text: string): boolean {
  return text.length <= INLINE_CONTENT_BYTES && Buffer.byteLength(text, 'utf8') <= INLINE_CONTENT_BYTES;
}

/**
 * A short stand-in for long text in workflow history and the event log: its head and tail and
 * how much is between (the whole text is in the blob store; `keel output` prints it).
 */
export function preview(text: string, head = 80, tail = 160): string {
  if (text.length <= head + tail + 40) return text;
  return `${text.slice(0, head)}\n[... ${text.length - head - tail} more characters stored ...]\n${text.slice(text.length - tail)}`;
}

/**
 * A small in-memory cache of stored content by sha. Content never changes under its
 * name, so entries never go stale; the cache only bounds memory (least recently used goes).
 */
export class ContentCache {
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;

  constructor(private readonly maxBytes = 64 * 1024 * 1024) {}

  async get(blobs: BlobStore, sha: string): Promise<Buffer> {
    const hit = this.entries.get(sha);
    if (hit) {
      this.entries.delete(sha);
      this.entries.set(sha, hit);
      return hit;
    }
    const data = await readBlob(blobs, sha);
    if (data.length <= this.maxBytes / 4) {
      this.entries.set(sha, data);
      this.bytes += data.length;
      for (const [k, v] of this.entries) {
        if (this.bytes <= this.maxBytes) break;
        this.entries.delete(k);
        this.bytes -= v.length;
      }
    }
    return data;
  }

  async text(blobs: BlobStore, ref: ContentRef): Promise<string> {
    return (await this.get(blobs, ref.sha)).toString('utf8');
  }
}
