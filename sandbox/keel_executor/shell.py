"""The shell tool: running a command, capturing its output, keeping its cwd and environment.

Every command process is spawned in Shell._spawn, and nowhere else: bash -c with
SHELL_SCRIPT as the sandbox user (uid/gid 1000, no groups, no capabilities: see
privileges), its own session and process group, stdin from /dev/null (never the
protocol's stdin), stdout and stderr on one pipe. A shell request waits on that
pipe and the child's pidfd in its own request thread (_collect). The executor is
PID 1, so the child is registered in reaping.CHILDREN while it runs and the
orphan reaper leaves it to us.

A call that times out or is cancelled stops every process of the sandbox user
(reaping.kill_sandbox_user), not just its process group: a command can detach
anything it starts (setsid, double fork, nohup). That includes background jobs of
earlier calls and the commands of other calls running at the same time; the
answers say so (`killedProcesses`, and a note in `output`; a call stopped by
another's timeout says `stoppedBy`). When no process can be started (EAGAIN: the
pids limit is full, e.g. a fork bomb), the same happens before the next try.

Output is kept twice, so a command that prints gigabytes never blocks on a full
pipe and memory stays bounded: the model's view (OutputCapture's head and tail of
maxOutput characters, as always) and, for the host's blob store, up to storeBytes
raw bytes (the first half and the last half of the stream; `full` and `cutBytes`
in the answer when the view was truncated).
"""

import base64
import errno
import os
import select
import stat
import subprocess
import threading
import time

from . import privileges, safefs
from .layout import HOME_STATE_DIR, SHELL_SCRATCH_DIR, WORKSPACE
from .reaping import CHILDREN, SPAWN_LOCK, kill_sandbox_user, pids_nearly_full, reap_group
from .server import log
from .tools import ToolError, cap_text, required_int

SHELL_ENV = os.path.join(HOME_STATE_DIR, "shell-env")
SHELL_STATE_LEGACY = os.path.join(HOME_STATE_DIR, "shell-state")
# After bash exits, how long to keep collecting output from children that
# still hold the pipe (background jobs) before returning.
DRAIN_GRACE_SEC = 0.2
# The most of a saved environment the executor reads back (execve takes far less anyway).
MAX_STATE_BYTES = 8 * 1024 * 1024
# Tries to start bash when the pids limit is full; every process of the sandbox user is stopped in between.
SPAWN_ATTEMPTS = 3
_HOME_ROOTS = ("/home/keel",)
_TMP_ROOTS = ("/tmp",)

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


class _Ring:
    """The last `cap` bytes of a stream, in a buffer that never grows past cap (no copying per chunk)."""

    def __init__(self, cap):
        self.cap = cap
        self.buf = bytearray()
        self.pos = 0  # once full: where the oldest byte is, and the next one goes

    def add(self, chunk):
        if self.cap <= 0 or not chunk:
            return
        if len(chunk) >= self.cap:
            self.buf[:] = chunk[len(chunk) - self.cap:]
            self.pos = 0
            return
        room = self.cap - len(self.buf)
        if room > 0:
            self.buf += chunk[:room]
            chunk = chunk[room:]
            if not chunk:
                return
        end = self.pos + len(chunk)
        if end <= self.cap:
            self.buf[self.pos:end] = chunk
        else:
            k = self.cap - self.pos
            self.buf[self.pos:] = chunk[:k]
            self.buf[:len(chunk) - k] = chunk[k:]
        self.pos = end % self.cap

    def bytes(self):
        if len(self.buf) < self.cap or self.pos == 0:
            return bytes(self.buf)
        return bytes(self.buf[self.pos:]) + bytes(self.buf[:self.pos])


class OutputCapture:
    """Output of one command: the model's view (head and rolling tail, as many bytes as maxOutput
    characters can take) and the stored bytes (first and last storeBytes/2)."""

    def __init__(self, max_chars, store_bytes):
        self.max_chars = max_chars
        # Four bytes per character covers any UTF-8 text.
        self.head_limit = max_chars * 4
        self.tail_limit = max_chars * 4
        self.head = bytearray()
        self.tail = bytearray()
        self.store_head_limit = store_bytes // 2
        self.store_head = bytearray()
        self.store_tail = _Ring(store_bytes - self.store_head_limit)
        self.total_bytes = 0
        self.total_chars = 0
        self.lock = threading.Lock()

    def add(self, chunk):
        with self.lock:
            self.total_bytes += len(chunk)
            self.total_chars += len(chunk) - len(chunk.translate(None, _NOT_CONTINUATION))
            room = self.store_head_limit - len(self.store_head)
            if room > 0:
                self.store_head += chunk[:room]
                self.store_tail.add(chunk[room:])
            else:
                self.store_tail.add(chunk)
            room = self.head_limit - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail += chunk
                if len(self.tail) > self.tail_limit:
                    del self.tail[: len(self.tail) - self.tail_limit]

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

    def stored(self):
        """(kept raw bytes: head then tail, bytes cut from the middle)."""
        with self.lock:
            kept = bytes(self.store_head) + self.store_tail.bytes()
            return kept, self.total_bytes - len(kept)


class _Drainer:
    """One thread, started with the executor, that reads to EOF (and drops) the pipes that background
    jobs still hold after their command returned, so they never block on a full pipe. A thread per
    pipe would need a new pid, which a fork bomb may have taken."""

    def __init__(self):
        self.lock = threading.Lock()
        self.fds = []
        self.wake_r, self.wake_w = os.pipe()
        threading.Thread(target=self._run, daemon=True, name="drainer").start()

    def add(self, fd):
        with self.lock:
            self.fds.append(fd)
        os.write(self.wake_w, b"x")

    def _run(self):
        poller = select.poll()
        poller.register(self.wake_r, select.POLLIN)
        watched = set()
        while True:
            with self.lock:
                new, self.fds = self.fds, []
            for fd in new:
                poller.register(fd, select.POLLIN)
                watched.add(fd)
            for fd, _ in poller.poll():
                if fd == self.wake_r:
                    os.read(self.wake_r, 4096)
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    poller.unregister(fd)
                    watched.discard(fd)
                    os.close(fd)


class _Call:
    """A running shell call: its process group, set once its bash is reaped, and who stopped it."""

    def __init__(self, pgid):
        self.pgid = pgid
        self.reaped = threading.Event()
        self.stopped_by = None  # "timeout", "cancel" or "spawn" of another call
        self.cancel_done = None  # an Event while a cancel of this call stops everything
        self.killed = None  # what that cancel's stop_everything said


class Shell:
    """Runs commands (op_shell) and kills them (cancel)."""

    def __init__(self):
        self.lock = threading.Lock()
        # request id -> _Call
        self.calls = {}
        self.cancelled = set()
        self.shell_seq = 0
        self.drainer = _Drainer()
        for d, roots in ((HOME_STATE_DIR, _HOME_ROOTS), (SHELL_SCRATCH_DIR, _TMP_ROOTS)):
            _mkdir_beneath(d, roots, 0o755 if d == HOME_STATE_DIR else 0o700)

    def op_shell(self, rid, args):
        command = args.get("command")
        if not isinstance(command, str) or not command:
            raise ToolError("InvalidArguments", "command must be a non-empty string")
        if "\0" in command:
            raise ToolError("InvalidArguments", "command must not contain NUL")
        timeout = args.get("timeoutSec")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ToolError("InvalidArguments", "timeoutSec must be a number > 0 (got %r)" % (timeout,))
        max_chars = required_int(args, "maxOutput", 1)
        store_bytes = required_int(args, "storeBytes", 0)
        started = time.monotonic()
        saved = _read_shell_state()
        env, cwd, legacy = _shell_start(saved)
        with self.lock:
            self.shell_seq += 1
            out_name = "sh-%d" % self.shell_seq
        out_path = os.path.join(SHELL_SCRATCH_DIR, out_name)
        _mkdir_beneath(SHELL_SCRATCH_DIR, _TMP_ROOTS, 0o700)
        env[b"KEEL_CMD"] = command.encode("utf-8", "surrogateescape")
        env[b"KEEL_OUT"] = out_path.encode()
        read_fd, write_fd = os.pipe()
        try:
            if cwd is None:  # the saved directory is gone: say so, as the first line of output
                cwd = WORKSPACE if os.path.isdir(WORKSPACE) else "/"
                os.write(write_fd, ("[keel: the previous working directory %s no longer exists; now in %s]\n"
                                    % (saved[0].decode("utf-8", "replace"), cwd)).encode())
            env[b"PWD"] = cwd.encode("utf-8", "surrogateescape") if isinstance(cwd, str) else cwd
            proc = self._spawn(rid, legacy, write_fd, cwd, env)
        except Exception:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        call = _Call(proc.pid)
        with self.lock:
            self.calls[rid] = call
        capture = OutputCapture(max_chars, store_bytes)
        killed = None
        try:
            timed_out, killed = self._collect(rid, proc, read_fd, capture, started + timeout)
        finally:
            with self.lock:
                self.calls.pop(rid, None)
                cancelled = rid in self.cancelled
                self.cancelled.discard(rid)
            call.reaped.set()
        if call.cancel_done is not None:
            call.cancel_done.wait(30)
            killed = killed or call.killed
        with SPAWN_LOCK:
            CHILDREN.discard(proc.pid)
        if proc.returncode is not None and proc.returncode >= 0 and not timed_out:
            _save_shell_state(out_name, saved)
        _unlink_beneath(out_path, _TMP_ROOTS)
        _unlink_beneath(out_path + ".names", _TMP_ROOTS)
        notes = []
        if call.stopped_by is not None and not cancelled:
            notes.append("[keel: stopped: another call %s, and that stops every process of the sandbox user]" % {
                "timeout": "timed out", "cancel": "was cancelled", "spawn": "found the process limit full"}[call.stopped_by])
        if killed is not None:
            others = killed.get("others", 0)
            if others:
                notes.append("[keel: %d other process%s of the sandbox user (background jobs, other calls) %s stopped too: "
                             "a timeout or cancel stops them all]" % (others, "" if others == 1 else "es", "was" if others == 1 else "were"))
            if killed.get("survivors"):
                notes.append("[keel: %d process%s of the sandbox user could not be stopped]" % (
                    killed["survivors"], "" if killed["survivors"] == 1 else "es"))
        output, truncated = capture.text()
        if notes:  # said by the executor, not written by the command: not in outputBytes or `full`
            output += ("" if not output or output.endswith("\n") else "\n") + "\n".join(notes) + "\n"
        exit_code = 124 if timed_out else proc.returncode
        if exit_code is not None and exit_code < 0:
            exit_code = 128 - exit_code  # killed by a signal, as bash reports it
        result = {
            "exitCode": exit_code,
            "output": output,
            "truncated": truncated,
            "timedOut": timed_out,
            "cancelled": cancelled,
            "outputBytes": capture.total_bytes,
            "durationMs": int((time.monotonic() - started) * 1000),
        }
        if truncated:
            kept, cut = capture.stored()
            result["full"] = base64.b64encode(kept).decode("ascii")
            result["cutBytes"] = cut
        if killed is not None:
            result["killedProcesses"] = killed["processes"]
        if call.stopped_by is not None:
            result["stoppedBy"] = call.stopped_by
        return result

    def _spawn(self, rid, legacy, write_fd, cwd, env):
        """Start bash as the sandbox user. When the pids limit is (nearly) full, or the start fails with
        EAGAIN, every process of the sandbox user is stopped first (and the output says so)."""
        full = pids_nearly_full()
        if full is not None:
            killed = self.stop_everything(rid, "spawn")
            os.write(write_fd, ("[keel: the sandbox's process limit was full (%d of %d in use), so every process of the "
                                "sandbox user was stopped first: %d in all]\n" % (full[0], full[1], killed["processes"] if killed else 0)).encode())
        for attempt in range(SPAWN_ATTEMPTS):
            try:
                with SPAWN_LOCK:  # registered before the orphan reaper can see it exit
                    proc = subprocess.Popen(
                        ["bash", "-c", SHELL_SCRIPT_LEGACY if legacy else SHELL_SCRIPT],
                        stdin=subprocess.DEVNULL,  # never the protocol's stdin
                        stdout=write_fd,
                        stderr=write_fd,  # one pipe: stdout and stderr interleave as on a terminal
                        cwd=cwd,
                        env=env,
                        start_new_session=True,  # own session and process group
                        **privileges.spawn_user_args(),
                    )
                    CHILDREN.add(proc.pid)
                return proc
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.ENOMEM) or attempt == SPAWN_ATTEMPTS - 1:
                    if e.errno in (errno.EAGAIN, errno.ENOMEM):
                        raise ToolError("ResourceExhausted", "no process could be started in the sandbox (%s), even after "
                                        "stopping every process of the sandbox user" % e.strerror)
                    raise
                killed = self.stop_everything(rid, "spawn")
                n = killed["processes"] if killed else 0
                os.write(write_fd, ("[keel: no process could be started (the sandbox's process limit was full), so every "
                                    "process of the sandbox user was stopped first: %d in all]\n" % n).encode())
        raise AssertionError("unreachable")

    def stop_everything(self, rid, why, pgid=None):
        """Kill every process of the sandbox user, on behalf of call `rid` (`why`: timeout, cancel, spawn).
        Other running calls are marked as stopped by it. Returns {"processes", "others", "survivors"}
        ("others": processes outside the process group `pgid`), or None where only a process group
        can be killed (then `pgid`'s is)."""
        with self.lock:
            for other, call in self.calls.items():
                if other != rid and call.stopped_by is None:
                    call.stopped_by = why
        outcome = kill_sandbox_user()
        if outcome is None:
            if pgid is not None:
                try:
                    os.killpg(pgid, 9)
                except OSError:
                    pass
                reap_group(pgid)
            return None
        seen, survivors = outcome
        return {"processes": len(seen), "others": sum(1 for g in seen.values() if g != pgid), "survivors": survivors}

    def _collect(self, rid, proc, fd, capture, deadline):
        """Read the command's output until it exits (or the deadline passes: then stop everything) and the
        pipe reaches EOF, waiting at most DRAIN_GRACE_SEC for background jobs that still hold it. One thread,
        no polling: the process exit arrives on a pidfd. Returns (timed out, what stop_everything said)."""
        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            pidfd = None  # old kernel: poll the child every few ms instead
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        timed_out = exited = eof = False
        killed = None
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
                        killed = self.stop_everything(rid, "timeout", proc.pid)
                        proc.wait()
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
            self.drainer.add(fd)
        return timed_out, killed

    def cancel(self, targets):
        """Stop the command of the first of `targets` (request ids) that is running one: every process of
        the sandbox user goes (see the module docstring)."""
        with self.lock:
            found = None
            for target in targets:
                call = self.calls.get(target)
                if call is not None:
                    self.cancelled.add(target)
                    call.cancel_done = threading.Event()
                    found = (target, call)
                    break
        if found is None:
            return {"cancelled": False}
        target, call = found
        try:
            call.killed = self.stop_everything(target, "cancel", call.pgid)
        finally:
            call.cancel_done.set()
        killed = call.killed
        # Answer only once the command is gone, so the caller can rely on it.
        finished = call.reaped.wait(10)
        result = {"cancelled": True, "finished": finished}
        if killed is not None:
            result["killedProcesses"] = killed["processes"]
        return result


def _mkdir_beneath(path, roots, mode):
    try:
        dfd, name = safefs.parent_beneath(path, roots)
    except (OSError, safefs.Refused) as e:
        log("cannot create %s: %s" % (path, e))
        return
    try:
        os.mkdir(name, mode, dir_fd=dfd)
    except FileExistsError:
        pass
    except OSError as e:
        log("cannot create %s: %s" % (path, e))
    finally:
        os.close(dfd)


def _unlink_beneath(path, roots):
    try:
        dfd, name = safefs.parent_beneath(path, roots)
    except (OSError, safefs.Refused):
        return
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _read_beneath(path, roots):
    """Bytes of the regular file at `path` (no symlinks, beneath `roots`), None if it is not one or is over MAX_STATE_BYTES."""
    try:
        fd = safefs.open_beneath(path, os.O_RDONLY, roots)
    except (OSError, safefs.Refused):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_STATE_BYTES:
            return None
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as f:
            fd = None
            data = f.read(MAX_STATE_BYTES + 1)
        return data if len(data) <= MAX_STATE_BYTES else None
    finally:
        if fd is not None:
            os.close(fd)


def _read_shell_state():
    """(cwd, [NAME=value, ...], raw bytes) from SHELL_ENV, or None when there is none (or it is unreadable)."""
    raw = _read_beneath(SHELL_ENV, _HOME_ROOTS)
    if raw is None:
        return None
    parts = raw.split(b"\0")
    if len(parts) < 3 or parts[0] != SHELL_STATE_MAGIC or parts[-1] != b"":
        return None
    return parts[1], parts[2:-1], raw


def _shell_start(saved):
    """Environment (bytes), cwd (None when the saved one is gone) and whether to source a legacy state file."""
    if saved is None:
        env = dict(os.environb)
        if os.path.lexists(SHELL_STATE_LEGACY):
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
    # bash refuses a cwd it cannot enter; fall back like `cd` would, and say so. The check is the
    # sandbox user's (effective_ids: this thread's fsuid), not root's.
    ok = cwd and os.path.isdir(cwd) and os.access(cwd, os.X_OK, effective_ids=True)
    return env, cwd if ok else None, False


def _save_shell_state(out_name, saved):
    """Keep what the EXIT trap wrote, when it wrote all of it; rewrite SHELL_ENV only when it changed."""
    raw_out = _read_beneath(os.path.join(SHELL_SCRATCH_DIR, out_name), _TMP_ROOTS)
    if raw_out is None:
        return  # the command replaced the shell (exec) or removed the file: keep the old state
    parts = raw_out.split(b"\0")
    if len(parts) < 4 or parts[-1] != b"" or parts[-2] != b"end":
        return
    keep = [p for p in parts[2:-2] if p.partition(b"=")[0] not in SHELL_STATE_SKIP]
    raw = b"\0".join([SHELL_STATE_MAGIC, parts[1]] + keep) + b"\0"
    if saved is not None and saved[2] == raw and os.path.lexists(SHELL_ENV):
        return
    _mkdir_beneath(HOME_STATE_DIR, _HOME_ROOTS, 0o755)
    try:
        dfd, name = safefs.parent_beneath(SHELL_ENV, _HOME_ROOTS)
    except (OSError, safefs.Refused) as e:
        log("cannot save shell state: %s" % e)
        return
    tmp = "%s.%d.%d" % (name, os.getpid(), threading.get_ident())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dfd)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        if saved is None:
            try:
                os.unlink("shell-state", dir_fd=dfd)
            except OSError:
                pass
    except OSError as e:
        log("cannot save shell state: %s" % e)
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
    finally:
        os.close(dfd)
