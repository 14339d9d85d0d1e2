/**
 * Unified text diffs (LCS by lines, 3 lines of context), for showing what a
 * step changed in a file. Pure code.
 */

/** Files at most this big get an inline text diff. */
export const TEXT_DIFF_LIMIT = 64 * 1024;
const CONTEXT_LINES = 3;
/** Beyond this many line pairs the inline diff is skipped (the LCS table would be too big). */
const MAX_DIFF_CELLS = 4_000_000;

/** A unified diff of two texts by lines (LCS), `---`/`+++` headers and hunks with 3 lines of context. Empty when equal. */
export function unifiedDiff(path: string, a: string, b: string): string {
  if (a === b) return '';
  const x = splitLines(a);
  const y = splitLines(b);
  const n = x.length;
  const m = y.length;
  if ((n + 1) * (m + 1) > MAX_DIFF_CELLS) return `--- a${path}\n+++ b${path}\n(too many lines for an inline diff)\n`;
  // lcs[i][j] = length of the LCS of x[i..] and y[j..]
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * w + j] = x[i] === y[j] ? (lcs[(i + 1) * w + j + 1] as number) + 1 : Math.max(lcs[(i + 1) * w + j] as number, lcs[i * w + j + 1] as number);
    }
  }
  type Op = { kind: ' ' | '-' | '+'; line: string };
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) {
      ops.push({ kind: ' ', line: x[i++] as string });
      j++;
    }
    else if (i < n && (j >= m || (lcs[(i + 1) * w + j] as number) >= (lcs[i * w + j + 1] as number))) ops.push({ kind: '-', line: x[i++] as string });
    else ops.push({ kind: '+', line: y[j++] as string });
  }
  const out = [`--- a${path}`, `+++ b${path}`];
  let k = 0;
  while (k < ops.length) {
    while (k < ops.length && ops[k]?.kind === ' ') k++;
    if (k >= ops.length) break;
    const start = Math.max(0, k - CONTEXT_LINES);
    let end = k;
    // Extend the hunk while changes are within 2 * context of each other.
    for (;;) {
      while (end < ops.length && ops[end]?.kind !== ' ') end++;
      let gap = end;
      while (gap < ops.length && ops[gap]?.kind === ' ') gap++;
      if (gap < ops.length && gap - end <= 2 * CONTEXT_LINES) end = gap;
      else {
        end = Math.min(ops.length, end + CONTEXT_LINES);
        break;
      }
    }
    const hunk = ops.slice(start, end);
    const aStart = countBefore(ops, start, '+') + 1;
    const bStart = countBefore(ops, start, '-') + 1;
    const aLen = hunk.filter((o) => o.kind !== '+').length;
    const bLen = hunk.filter((o) => o.kind !== '-').length;
    out.push(`@@ -${aLen ? aStart : aStart - 1},${aLen} +${bLen ? bStart : bStart - 1},${bLen} @@`);
    for (const o of hunk) out.push(`${o.kind}${o.line}`);
    k = end;
  }
  const unterminated = (t: string): boolean => t !== '' && !t.endsWith('\n');
  if (unterminated(a) || unterminated(b)) out.push('\\ No newline at end of file');
  return `${out.join('\n')}\n`;
}

/** Lines of `ops` before index `upTo` that exist on one side (those not of kind `skip`). */
function countBefore(ops: Array<{ kind: string }>, upTo: number, skip: string): number {
  let c = 0;
  for (let i = 0; i < upTo; i++) if (ops[i]?.kind !== skip) c++;
  return c;
}

function splitLines(s: string): string[] {
  if (s === '') return [];
  const lines = s.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Decode as text when small, valid UTF-8 and free of NUL bytes; else undefined. */
export function asText(data: Uint8Array): string | undefined {
  if (data.length > TEXT_DIFF_LIMIT || data.includes(0)) return undefined;
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(data);
  } catch {
    return undefined;
  }
}
