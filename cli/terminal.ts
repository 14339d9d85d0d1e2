/**
 * Writing what a session produced to a person's terminal. Commands, file names,
 * model text and tool output are written by code nobody reviewed: raw, their
 * control sequences could retitle the window, clear the screen, rewrite what is
 * shown, or set the clipboard (OSC 52). Everything the CLI prints goes through
 * here and such characters are shown as visible escapes instead.
 */

/**
 * C0 controls but newline and tab, DEL, C1 controls (U+0080..U+009F: 8-bit CSI and OSC),
 * and the bidirectional overrides and isolates that reorder what is displayed.
 */
const UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

function visible(c: string): string {
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** Text with every control character shown as an escape (`\x1b`, `\u202e`); newlines and tabs kept. */
export function termSafe(text: string): string {
  return text.replace(UNSAFE, visible);
}

/** Print lines for a person. */
export function print(...lines: string[]): void {
  for (const line of lines) console.log(termSafe(line));
}

/** JSON text with the control characters JSON.stringify leaves raw (DEL, C1, bidi) as \u escapes too. */
export function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Print JSON for a program. */
export function printJson(value: unknown): void {
  console.log(safeJson(value));
}

/** Raw bytes for a pipe or file; escaped when they would reach a terminal. */
export function writeBytes(data: Buffer): void {
  if (process.stdout.isTTY) process.stdout.write(termSafe(data.toString('utf8')));
  else process.stdout.write(data);
}
