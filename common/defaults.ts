/**
 * Defaults that more than one part of Keel reads: the workflow sizes activity
 * timeouts from the same numbers the sandbox host enforces, and the client and
 * the workers connect to the same Temporal by default. Each default lives here
 * and nowhere else. Pure code: safe for workflows.
 */

/** A `shell` call that names no `timeoutSec` is killed after this many seconds. */
export const DEFAULT_SHELL_TIMEOUT_SEC = 120;
/** The longest a file tool (`read_file`, `write_file`, `edit_file`, `list_files`) may take. */
export const FILE_TOOL_TIMEOUT_SEC = 60;
/** Most characters of one tool output the model sees (40% head, 60% tail, and a note of what was cut). */
export const DEFAULT_OUTPUT_LIMIT = 16_000;
/** Model turns before a session stops with status `step_limit`. */
export const DEFAULT_MAX_STEPS = 50;
/** A kept-alive session ends after this many seconds without a message. */
export const DEFAULT_IDLE_TIMEOUT_SEC = 7 * 24 * 3600;
/** Model turns one workflow run takes before the session continues as new (unless Temporal suggests it sooner). */
export const DEFAULT_STEPS_PER_RUN = 1000;
/** A run also continues as new once its history reaches this many events or bytes (Temporal's hard limits are 51,200 and 50 MB). */
export const MAX_RUN_HISTORY_EVENTS = 10_000;
export const MAX_RUN_HISTORY_BYTES = 8 * 1024 * 1024;
/** Tokens a model may write in one turn. */
export const DEFAULT_MAX_OUTPUT_TOKENS = 4096;

/** Resource limits and timings of a session's sandbox when its `SandboxSpec` leaves them out. */
export const SANDBOX_DEFAULTS = {
  memoryMb: 1024,
  cpus: 1,
  pidsLimit: 256,
  /** A wait longer than this releases the container (snapshot first, restore later). */
  idleSuspendSec: 300,
  /** How long a host may leave a call queued before the session moves to another host. */
  hostTimeoutSec: 30,
  /** Size of the session's own /workspace filesystem (MiB); a command that fills it gets ENOSPC. */
  diskMb: 2048,
} as const;

/** The Docker runtime a sandbox runs under when neither its spec nor the worker (`KEEL_SANDBOX_RUNTIME`) names one. */
export const DEFAULT_SANDBOX_RUNTIME = 'runc';

/** Where clients and workers find Temporal when nothing else is said. */
export const DEFAULT_TEMPORAL_ADDRESS = 'localhost:7233';
export const DEFAULT_TEMPORAL_NAMESPACE = 'default';
/** The tenant of a session whose spec names none. */
export const DEFAULT_TENANT = 'default';

/** Content up to this many bytes (tool output, model text, tool arguments) stays inline in workflow history and events. */
export const INLINE_CONTENT_BYTES = 1024;
/**
 * Most bytes of one tool output kept in the blob store. Beyond it the middle is cut (head and tail kept,
 * half each) and the stored text says how many bytes were cut, so an output flood cannot fill the store.
 */
export const OUTPUT_STORE_CAP = 10 * 1024 * 1024;
/** Tool calls one model turn may make; the rest are dropped and the model is told. */
export const MAX_TOOL_CALLS_PER_TURN = 32;
/** Largest tool arguments accepted (JSON bytes), and their deepest nesting. */
export const MAX_TOOL_INPUT_BYTES = 4 * 1024 * 1024;
export const MAX_TOOL_INPUT_DEPTH = 64;
/**
 * Largest model response body read, and its deepest bracket nesting (counted through strings too, so
 * tool arguments sent as text are covered); checked before the AI SDK parses it, whose recursion a
 * 20,000-deep value overflows. Nesting between MAX_TOOL_INPUT_DEPTH and this gets invalid-call results.
 */
export const MAX_MODEL_RESPONSE_BYTES = 64 * 1024 * 1024;
export const MAX_MODEL_RESPONSE_DEPTH = 1000;
