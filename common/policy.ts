/**
 * Approval policies: for each tool call, `allow`, `deny` or `ask` a person first.
 * Rules are tried in order and the first that matches decides; the policy's
 * `default` decides the rest. Pure code: the workflow evaluates it.
 *
 * A rule matches a tool by name (`*` for any) and, optionally:
 * - `command`: a regular expression searched in a `shell` command. It is tried on
 *   the command as written and on its normalised forms (below), so `rm  -rf`,
 *   `'rm' -rf`, `r\m -rf`, `command rm -rf`, `bash -c "rm -rf /"` and
 *   `x; rm -rf /` all match `rm -rf`.
 * - `path`: a glob (`*` within a path segment, `**` across segments, `?`) matched
 *   against a file tool's path, made absolute under /workspace.
 *
 * A policy on text is not a sandbox. It cannot see what a command will do, only
 * how it is written: a script written with `write_file` and then run, a command
 * assembled from variables (`$a -rf`), decoded from base64, or run by a program
 * other than a shell (`python3 -c 'import shutil; …'`) is not caught. Keep the
 * sandbox's own limits (no network, no credentials) as the protection; use
 * policies to put a person in front of actions that are costly when expected.
 */

export type PolicyAction = 'allow' | 'deny' | 'ask';

export interface PolicyRule {
  /** A tool name, or `*` for every tool. */
  tool: string;
  action: PolicyAction;
  /** For `shell`: a regular expression searched in the command (and its normalised forms). */
  command?: string;
  /** For file tools: a glob matched against the absolute path. */
  path?: string;
  /** Shown to the person asked, and to the model on a deny. */
  reason?: string;
  /** A rule a person added with "approve and remember": exactly this call's arguments (canonical JSON). */
  exact?: string;
}

export interface ApprovalPolicy {
  /** @default 'allow' */
  default?: PolicyAction;
  rules?: PolicyRule[];
  /** A call waiting longer than this for an answer is denied. @default 86400 (a day) */
  timeoutSec?: number;
}

export interface PolicyDecision {
  action: PolicyAction;
  /** The rule that decided (undefined: the default). */
  rule?: PolicyRule;
  /** Index of the rule in the policy. */
  ruleIndex?: number;
}

/** Programs that run the rest of their arguments as a command. */
const WRAPPERS = new Set(['command', 'builtin', 'exec', 'nohup', 'time', 'nice', 'sudo', 'doas', 'env', 'xargs', 'timeout', 'stdbuf', 'setsid', 'chroot']);
/** Shells whose `-c` argument is a command. */
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'busybox']);

/**
 * Split a shell command into words as bash would read them, with quotes and backslash
 * escapes removed; command separators (`;`, `&&`, `||`, `|`, `&`, newlines, `(`, `)`,
 * backticks and `$(`) become `;` words. Not a full shell parser: enough to see through
 * the spellings people and models use to dodge a pattern.
 */
export function shellWords(command: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  const end = (): void => {
    if (inWord) words.push(word);
    word = '';
    inWord = false;
  };
  for (let i = 0; i < command.length; i++) {
    const c = command[i] as string;
    if (c === '\\') {
      const next = command[i + 1];
      if (next === '\n') {
        i++;
        continue;
      }
      if (next !== undefined) {
        word += next;
        inWord = true;
        i++;
      }
      continue;
    }
    if (c === "'") {
      const close = command.indexOf("'", i + 1);
      word += command.slice(i + 1, close < 0 ? undefined : close);
      inWord = true;
      i = close < 0 ? command.length : close;
      continue;
    }
    if (c === '"') {
      let j = i + 1;
      for (; j < command.length && command[j] !== '"'; j++) {
        if (command[j] === '\\' && j + 1 < command.length && '"\\$`'.includes(command[j + 1] as string)) j++;
        word += command[j];
      }
      inWord = true;
      i = j;
      continue;
    }
    if (c === '$' && command[i + 1] === '(') {
      end();
      words.push(';');
      i++;
      continue;
    }
    if (';&|\n()`'.includes(c)) {
      end();
      if (words[words.length - 1] !== ';') words.push(';');
      continue;
    }
    if (/\s/.test(c)) {
      end();
      continue;
    }
    word += c;
    inWord = true;
  }
  end();
  return words;
}

/** The simple commands inside a command, each normalised (wrappers and `sh -c` unwrapped), as text. */
export function simpleCommands(command: string, depth = 0): string[] {
  const out: string[] = [];
  let current: string[] = [];
  const flush = (): void => {
    let words = [...current];
    // Leading assignments (X=1 cmd) are not the command.
    while (words.length > 0 && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[0] as string)) words = words.slice(1);
    // Wrappers run their arguments: skip them (and their own options).
    while (words.length > 0 && WRAPPERS.has(basename(words[0] as string))) {
      words = words.slice(1);
      while (words.length > 0 && (words[0] as string).startsWith('-')) words = words.slice(1);
      while (words.length > 0 && /^[A-Za-z_][A-Za-z0-9_]*=/.test(words[0] as string)) words = words.slice(1);
    }
    if (words.length > 0) {
      const head = basename(words[0] as string);
      const c = words.indexOf('-c');
      if (SHELLS.has(head) && c > 0 && words[c + 1] !== undefined && depth < 4) out.push(...simpleCommands(words[c + 1] as string, depth + 1));
      else if (head === 'eval' && depth < 4) out.push(...simpleCommands(words.slice(1).join(' '), depth + 1));
      else out.push([head, ...words.slice(1)].join(' '));
    }
    current = [];
  };
  for (const w of shellWords(command)) {
    if (w === ';') flush();
    else current.push(w);
  }
  flush();
  return out;
}

function basename(word: string): string {
  const i = word.lastIndexOf('/');
  return i >= 0 ? word.slice(i + 1) : word;
}

/** Every form of a command a `command` pattern is tried on. */
export function commandForms(command: string): string[] {
  const simple = simpleCommands(command);
  return [command, command.replace(/\s+/g, ' ').trim(), shellWords(command).join(' '), ...simple, simple.join(' ; ')];
}

/** A glob as a regular expression: `**` spans segments, `*` and `?` stay within one. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
      if (glob[i + 1] === '/') i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** A file tool's path as the sandbox resolves it: absolute, under /workspace when relative, `.` and `..` folded. */
export function absolutePath(path: string): string {
  const parts: string[] = [];
  for (const p of (path.startsWith('/') ? path : `/workspace/${path}`).split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') parts.pop();
    else parts.push(p);
  }
  return `/${parts.join('/')}`;
}

/** Whether one rule matches a call. `exactKey` is the call's canonical arguments (for remembered approvals). */
export function ruleMatches(rule: PolicyRule, tool: string, input: unknown, exactKey?: string): boolean {
  if (rule.tool !== '*' && rule.tool !== tool) return false;
  if (rule.exact !== undefined) return exactKey !== undefined && rule.exact === exactKey;
  const args = (input ?? {}) as { command?: unknown; path?: unknown };
  if (rule.command !== undefined) {
    if (typeof args.command !== 'string') return false;
    const re = new RegExp(rule.command);
    if (!commandForms(args.command).some((form) => re.test(form))) return false;
  }
  if (rule.path !== undefined) {
    const path = typeof args.path === 'string' ? args.path : tool === 'list_files' ? '/workspace' : undefined;
    if (path === undefined || !globToRegExp(rule.path).test(absolutePath(path))) return false;
  }
  return true;
}

/** The first rule that matches decides; else the default (`allow`). */
export function evaluatePolicy(policy: ApprovalPolicy | undefined, tool: string, input: unknown, exactKey?: string): PolicyDecision {
  for (const [ruleIndex, rule] of (policy?.rules ?? []).entries()) {
    if (ruleMatches(rule, tool, input, exactKey)) return { action: rule.action, rule, ruleIndex };
  }
  return { action: policy?.default ?? 'allow' };
}

/** What is wrong with a policy, one sentence per problem; empty when it is fine. */
export function policyProblems(policy: ApprovalPolicy | undefined, tools?: readonly string[]): string[] {
  if (policy === undefined) return [];
  if (typeof policy !== 'object' || policy === null || Array.isArray(policy)) return ['policy must be an object with default, rules and timeoutSec'];
  if (policy.rules !== undefined && !Array.isArray(policy.rules)) return ['policy.rules must be a list of rules'];
  const problems: string[] = [];
  const actions = ['allow', 'deny', 'ask'];
  if (policy.default !== undefined && !actions.includes(policy.default)) problems.push(`policy.default must be allow, deny or ask, not ${JSON.stringify(policy.default)}`);
  if (policy.timeoutSec !== undefined && !(Number.isInteger(policy.timeoutSec) && policy.timeoutSec > 0)) problems.push('policy.timeoutSec must be a positive integer');
  for (const [i, r] of (policy.rules ?? []).entries()) {
    if (typeof r !== 'object' || r === null) {
      problems.push(`policy.rules[${i}] must be an object`);
      continue;
    }
    if (typeof r.tool !== 'string' || !r.tool) problems.push(`policy.rules[${i}].tool must be a tool name or *`);
    else if (tools && r.tool !== '*' && !tools.includes(r.tool)) problems.push(`policy.rules[${i}].tool: no tool is called ${r.tool} (${tools.join(', ')}, or *)`);
    if (r.path !== undefined && typeof r.path !== 'string') problems.push(`policy.rules[${i}].path must be a glob`);
    if (!actions.includes(r.action)) problems.push(`policy.rules[${i}].action must be allow, deny or ask`);
    if (r.command !== undefined) {
      try {
        new RegExp(r.command);
      } catch (err) {
        problems.push(`policy.rules[${i}].command is not a regular expression: ${(err as Error).message}`);
      }
    }
  }
  return problems;
}
