"""The shell tool: running a command, capturing its output, keeping its cwd and environment.

Every command process is spawned in Shell.op_shell, and nowhere else: bash -c with
SHELL_SCRIPT, its own session and process group (so a timeout or a cancel kills
all of it), stdin from /dev/null (never the protocol's stdin), stdout and stderr
on one pipe. A shell request waits on that pipe and the child's pidfd in its own
request thread (_collect). The executor is PID 1, so the child is registered in
reaping.CHILDREN while it runs and the orphan reaper leaves it to us.

Output is kept as a head and a rolling tail (OutputCapture), so a command that
prints gigabytes never blocks on a full pipe and the answer stays small.
"""

import os
import select
import signal
import subprocess
import threading
import time

from .layout import HOME_STATE_DIR, STATE_DIR, WORKSPACE
from .reaping import CHILDREN, SPAWN_LOCK, reap_group
from .server import log
from .tools import DEFAULT_MAX_OUTPUT, ToolError, cap_text

SHELL_ENV = os.path.join(HOME_STATE_DIR, "shell-env")
SHELL_STATE_LEGACY = os.path.join(HOME_STATE_DIR, "shell-state")
DEFAULT_TIMEOUT_SEC = 120
# After bash exits, how long to keep collecting output from children that
# still hold the pipe (background jobs) before returning.
DRAIN_GRACE_SEC = 0.2

# Runs the user's command. The command arrives in $KEEL_CMD and is eval'd, never
# spliced into this text. The executor starts bash in the saved cwd with the saved
# environment (env=, cwd=: no state file sourced, no fork), and the EXIT trap
# writes the new state with builtins only (no mkdir/mv/subshell): exit code, $PWD,
# then every exported NAME=value, NUL-separated, ended by "end". The executor
# reads that file after bash exits and keeps it in HOME_STATE_DIR, so `cd` and
# `export` persist between calls and across a restore.
SHELL_HEAD = r"""
__keel_out=$KEEL_OUT __keel_cmd=$KEEL_CMD
unset KEEL_OUT KEEL_CMD
"""
SHELL_TAIL = r"""
__keel_save() {
  local __keel_rc=$? __keel_n
  {
    printf '%d\0%s\0' "$__keel_rc" "$PWD"
    compgen -e >"$__keel_out.names"
    while IFS= read -r __keel_n; do
      [ -n "${!__keel_n+x}" ] && printf '%s=%s\0' "$__keel_n" "${!__keel_n}"
    done <"$__keel_out.names"
    printf 'end\0'
  } >"$__keel_out" 2>/dev/null
  exit "$__keel_rc"
}
trap __keel_save EXIT
eval "$__keel_cmd"
"""
# State written by executors before the format above (a bash script from
# `export -p`): sourced once, then replaced by the new format.
SHELL_LEGACY = r"""
if [ -r "$KEEL_LEGACY_STATE" ]; then
  __keel_state=$KEEL_LEGACY_STATE
  for __keel_n in $(compgen -e); do [ "$__keel_n" = HOSTNAME ] || unset "$__keel_n" 2>/dev/null; done
  . "$__keel_state" 2>/dev/null
  __keel_old=${OLDPWD-} __keel_had_old=${OLDPWD+x}
  if [ -n "${__keel_cwd-}" ] && ! cd -- "$__keel_cwd" 2>/dev/null; then
    cd /workspace 2>/dev/null || cd /
    echo "[keel: the previous working directory $__keel_cwd no longer exists; now in $PWD]" >&2
  fi
  if [ -n "$__keel_had_old" ]; then OLDPWD=$__keel_old; else unset OLDPWD; export OLDPWD; fi
  unset __keel_n __keel_cwd __keel_old __keel_had_old __keel_state
fi
"""
SHELL_SCRIPT = SHELL_HEAD + SHELL_TAIL
SHELL_SCRIPT_LEGACY = SHELL_HEAD + SHELL_LEGACY + SHELL_TAIL
SHELL_STATE_MAGIC = b"keel-shell-1"
# Variables that describe the process or container, not the session: never kept.
SHELL_STATE_SKIP = (b"HOSTNAME", b"SHLVL", b"PWD", b"_")

# Every byte that starts a UTF-8 character; deleting these leaves the continuation
# bytes, so characters = bytes - continuation bytes, counted without decoding.
_NOT_CONTINUATION = bytes(b for b in range(256) if not 0x80 <= b <= 0xBF)


class OutputCapture:
    """Output of one command: a head and a rolling tail, so huge output never blocks the child."""

    def __init__(self, max_chars):
        self.max_chars = max_chars
        # Four bytes per character covers any UTF-8 text.
        self.head_limit = max_chars * 4
        self.tail_limit = max_chars * 4
        self.head = bytearray()
        self.tail = bytearray()
        self.total_bytes = 0
        self.total_chars = 0
        self.lock = threading.Lock()

    def add(self, chunk):
        with self.lock:
            self.total_bytes += len(chunk)
            self.total_chars += len(chunk) - len(chunk.translate(None, _NOT_CONTINUATION))
            room = self.head_limit - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail += chunk
                if len(self.tail) > self.tail_limit:
                    del self.tail[: len(self.tail) - self.tail_limit]

    def drain_in_background(self, fd):
        """Keep reading fd to EOF in a thread (background jobs that outlive the command must never block on a full pipe)."""
        def run():
            try:
                while os.read(fd, 65536):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
        threading.Thread(target=run, daemon=True).start()

    def text(self):
        """Returns (text, truncated)."""
        with self.lock:
            head, tail = bytes(self.head), bytes(self.tail)
            total_bytes, total_chars = self.total_bytes, self.total_chars
        if total_bytes == len(head) + len(tail):
            return cap_text((head + tail).decode("utf-8", "replace"), self.max_chars)
        h = int(self.max_chars * 0.4)
        t = self.max_chars - h
        head_text = head.decode("utf-8", "replace")[:h]
        tail_text = tail.decode("utf-8", "replace")
        tail_text = tail_text[len(tail_text) - t:] if len(tail_text) > t else tail_text
        cut = max(0, total_chars - len(head_text) - len(tail_text))
        return "%s\n[... %d characters cut; %d in total ...]\n%s" % (head_text, cut, total_chars, tail_text), True


class Shell:
    """Runs commands (op_shell) and kills them (cancel)."""

    def __init__(self):
        self.lock = threading.Lock()
        # request id -> (process group id, Event set once the group leader is reaped)
        self.groups = {}
        self.cancelled = set()
        self.shell_seq = 0
        try:
            os.makedirs(HOME_STATE_DIR, mode=0o755, exist_ok=True)
        except OSError as e:
            log("cannot create %s: %s" % (HOME_STATE_DIR, e))

    def op_shell(self, rid, args):
        command = args.get("command")
        if not isinstance(command, str) or not command:
            raise ToolError("InvalidArguments", "command must be a non-empty string")
        timeout = args.get("timeoutSec") or DEFAULT_TIMEOUT_SEC
        max_chars = int(args.get("maxOutput") or DEFAULT_MAX_OUTPUT)
        started = time.monotonic()
        saved = _read_shell_state()
        env, cwd, legacy = _shell_start(saved)
        with self.lock:
            self.shell_seq += 1
            out_path = os.path.join(STATE_DIR, "sh-%d" % self.shell_seq)
        env[b"KEEL_CMD"] = command.encode("utf-8", "surrogateescape")
        env[b"KEEL_OUT"] = out_path.encode()
        read_fd, write_fd = os.pipe()
        try:
            if cwd is None:  # the saved directory is gone: say so, as the first line of output
                cwd = WORKSPACE if os.path.isdir(WORKSPACE) else "/"
                os.write(write_fd, ("[keel: the previous working directory %s no longer exists; now in %s]\n"
                                    % (saved[0].decode("utf-8", "replace"), cwd)).encode())
            env[b"PWD"] = cwd.encode("utf-8", "surrogateescape") if isinstance(cwd, str) else cwd
            # No preexec_fn and close_fds: CPython spawns with vfork, the cheapest way to start bash.
            with SPAWN_LOCK:  # registered before the orphan reaper can see it exit
                proc = subprocess.Popen(
                    ["bash", "-c", SHELL_SCRIPT_LEGACY if legacy else SHELL_SCRIPT],
                    stdin=subprocess.DEVNULL,  # never the protocol's stdin
                    stdout=write_fd,
                    stderr=write_fd,  # one pipe: stdout and stderr interleave as on a terminal
                    cwd=cwd,
                    env=env,
                    start_new_session=True,  # own process group, so a timeout kills all of it
                )
                CHILDREN.add(proc.pid)
        except Exception:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        reaped = threading.Event()
        with self.lock:
            self.groups[rid] = (proc.pid, reaped)
        capture = OutputCapture(max_chars)
        try:
            timed_out = _collect(proc, read_fd, capture, started + timeout)
        finally:
            with self.lock:
                self.groups.pop(rid, None)
                cancelled = rid in self.cancelled
                self.cancelled.discard(rid)
            reaped.set()
        with SPAWN_LOCK:
            CHILDREN.discard(proc.pid)
        if proc.returncode is not None and proc.returncode >= 0 and not timed_out:
            _save_shell_state(out_path, saved)
        _unlink(out_path)
        _unlink(out_path + ".names")
        output, truncated = capture.text()
        exit_code = 124 if timed_out else proc.returncode
        if exit_code is not None and exit_code < 0:
            exit_code = 128 - exit_code  # killed by a signal, as bash reports it
        return {
            "exitCode": exit_code,
            "output": output,
            "truncated": truncated,
            "timedOut": timed_out,
            "cancelled": cancelled,
            "durationMs": int((time.monotonic() - started) * 1000),
        }

    def cancel(self, targets):
        """Kill the command of the first of `targets` (request ids) that is running one."""
        with self.lock:
            group = None
            for target in targets:
                group = self.groups.get(target)
                if group is not None:
                    self.cancelled.add(target)
                    break
        if group is None:
            return {"cancelled": False}
        pgid, reaped = group
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        # Answer only once the command is gone, so the caller can rely on it.
        finished = reaped.wait(10)
        reap_group(pgid)
        return {"cancelled": True, "finished": finished}


def _collect(proc, fd, capture, deadline):
    """Read the command's output until it exits (or the deadline passes: then kill its group) and the pipe
    reaches EOF, waiting at most DRAIN_GRACE_SEC for background jobs that still hold it. One thread, no
    polling: the process exit arrives on a pidfd. Returns whether the command timed out."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None  # old kernel: poll the child every few ms instead
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    timed_out = exited = eof = False
    drain_until = None
    try:
        while not (exited and eof):
            now = time.monotonic()
            if exited:
                wait = drain_until - now
                if wait <= 0:
                    break
            else:
                wait = deadline - now
                if wait <= 0:
                    timed_out = True
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
                    reap_group(proc.pid)
                    if pidfd is not None:
                        poller.unregister(pidfd)
                    exited, drain_until = True, time.monotonic() + DRAIN_GRACE_SEC
                    continue
                if pidfd is None:
                    wait = min(wait, 0.005)
            for ready, _ in poller.poll(max(0, wait) * 1000 + 0.5):
                if ready == fd:
                    chunk = os.read(fd, 65536)
                    if chunk:
                        capture.add(chunk)
                    else:
                        eof = True
                        poller.unregister(fd)
                elif ready == pidfd:
                    poller.unregister(pidfd)
                    proc.wait()
                    exited, drain_until = True, time.monotonic() + DRAIN_GRACE_SEC
            if pidfd is None and not exited and proc.poll() is not None:
                exited, drain_until = True, time.monotonic() + DRAIN_GRACE_SEC
    finally:
        if pidfd is not None:
            os.close(pidfd)
        if not exited:
            proc.wait()
    if eof:
        os.close(fd)
    else:
        capture.drain_in_background(fd)
    return timed_out


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _read_shell_state():
    """(cwd, [NAME=value, ...], raw bytes) from SHELL_ENV, or None when there is none (or it is unreadable)."""
    try:
        with open(SHELL_ENV, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    parts = raw.split(b"\0")
    if len(parts) < 3 or parts[0] != SHELL_STATE_MAGIC or parts[-1] != b"":
        return None
    return parts[1], parts[2:-1], raw


def _shell_start(saved):
    """Environment (bytes), cwd (None when the saved one is gone) and whether to source a legacy state file."""
    if saved is None:
        env = dict(os.environb)
        if os.path.exists(SHELL_STATE_LEGACY):
            env[b"KEEL_LEGACY_STATE"] = SHELL_STATE_LEGACY.encode()
            return env, WORKSPACE if os.path.isdir(WORKSPACE) else "/", True
        return env, WORKSPACE if os.path.isdir(WORKSPACE) else "/", False
    cwd, pairs, _ = saved
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition(b"=")
        if sep and name:
            env[name] = value
    host = os.environb.get(b"HOSTNAME")
    if host is not None:
        env[b"HOSTNAME"] = host  # names this container, which a restore replaces
    # bash refuses a cwd it cannot enter; fall back like `cd` would, and say so.
    ok = cwd and os.path.isdir(cwd) and os.access(cwd, os.X_OK)
    return env, cwd if ok else None, False


def _save_shell_state(out_path, saved):
    """Keep what the EXIT trap wrote, when it wrote all of it; rewrite SHELL_ENV only when it changed."""
    try:
        with open(out_path, "rb") as f:
            parts = f.read().split(b"\0")
    except OSError:
        return  # the command replaced the shell (exec) or removed the file: keep the old state
    if len(parts) < 4 or parts[-1] != b"" or parts[-2] != b"end":
        return
    keep = [p for p in parts[2:-2] if p.partition(b"=")[0] not in SHELL_STATE_SKIP]
    raw = b"\0".join([SHELL_STATE_MAGIC, parts[1]] + keep) + b"\0"
    if saved is not None and saved[2] == raw and os.path.exists(SHELL_ENV):
        return
    tmp = "%s.%d.%d" % (SHELL_ENV, os.getpid(), threading.get_ident())
    try:
        os.makedirs(HOME_STATE_DIR, mode=0o755, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(raw)
        os.replace(tmp, SHELL_ENV)
        if saved is None:
            _unlink(SHELL_STATE_LEGACY)
    except OSError as e:
        log("cannot save shell state: %s" % e)
        _unlink(tmp)

