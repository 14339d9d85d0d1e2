#!/usr/bin/env python3
"""Keel sandbox executor: the one long-lived process of a sandbox container.

Protocol: JSON lines. A request on stdin is
    {"id": "<request id>", "op": "<op>", "args": {...}, "key": "<idempotency key>"}
and every request gets exactly one line on stdout:
    {"id": ..., "ok": true, "result": {...}}  or
    {"id": ..., "ok": false, "error": {"code": "...", "message": "..."}}
Diagnostics go to stderr only. Requests run concurrently, one thread each
(ping inline); a shell request waits on its output pipe and the child's pidfd
in that one thread.

Idempotency: a request whose key has already completed gets the recorded
response again (under its own id) without running; one whose key is still
running waits for it. Keys are kept in memory (the last MAX_KEYS) and appended
to JOURNAL_PATH.

Stdin EOF: Docker keeps a container's stdin open across attaches when the
container was created with OpenStdin=true and StdinOnce=false, so a client
that detaches or dies does not end it. If stdin does end anyway, the executor
keeps running (it is the container's main process) and finishes what it has.

Snapshots: the writable files (SNAPSHOT_ROOTS) can be described by a
canonical manifest (sorted entries: directories, symlinks, regular files with
mode, size and sha256), whose sha256 is the snapshot id. A stat cache keyed by
path -> (size, mtime_ns, ctime_ns, ino) means unchanged files are not re-read;
files whose timestamps fall within RACY_NS of the walk are rehashed next time
(git's racy-clean rule). Small snapshots come back whole in the snapshot
answer (`inline`: the manifest and changed files' bytes); larger ones are
fetched with get_manifest and read_files. The host uploads file contents to its
blob store and writes them back into a fresh container (restore_begin,
write_files, restore_finish). The journal and restore marker live in /tmp,
which is not snapshotted; the shell state lives in /home/keel, which is.

Warm pool: started with `--pool-lease N`, the executor serves a container made
before any session needs it. It exits N seconds after the last `lease` unless a
`claim` binds it to one session (for good; other sessions are refused), so the
pool of a worker that died stops by itself. Containers made for a session
refuse claims.

Python 3 standard library only.
"""

import base64
import collections
import hashlib
import json
import select
import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

WORKSPACE = "/workspace"
# Container-lifetime state: never snapshotted.
STATE_DIR = "/tmp/.keel"
JOURNAL_PATH = os.path.join(STATE_DIR, "journal")
RESTORED_MARKER = os.path.join(STATE_DIR, "restored")
# Session state that must survive a restore: inside a snapshot root.
HOME_STATE_DIR = "/home/keel/.keel"
SHELL_ENV = os.path.join(HOME_STATE_DIR, "shell-env")
SHELL_STATE_LEGACY = os.path.join(HOME_STATE_DIR, "shell-state")
# The session this container serves, once a pool owner has claimed it.
CLAIM_PATH = os.path.join(STATE_DIR, "claim")
SNAPSHOT_ROOTS = ("/workspace", "/home/keel")
MANIFEST_VERSION = 1
# Files whose mtime/ctime is this close to the walk are hashed again next time:
# a write in the same clock tick as the stat would otherwise go unnoticed.
RACY_NS = 2 * 10**9
MAX_MANIFESTS = 4
HASH_CHUNK = 1 << 20
MAX_READ_BATCH = 4 << 20
JOURNAL_MAX_BYTES = 1024 * 1024
MAX_KEYS = 1000
DEFAULT_MAX_OUTPUT = 16000
DEFAULT_TIMEOUT_SEC = 120
MAX_LIST_ENTRIES = 1000
DEFAULT_READ_LIMIT = 2000
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

_out_lock = threading.Lock()


def log(msg):
    sys.stderr.write("executor: %s\n" % msg)
    sys.stderr.flush()


def send(obj):
    # ensure_ascii: CPython's non-ASCII encoder runs at ~85 MB/s on large strings
    # (snapshot transfers), the ASCII one at ~450 MB/s; and lone surrogates from
    # undecodable file names survive as \udcXX escapes instead of being replaced.
    line = json.dumps(obj, ensure_ascii=True, separators=(",", ":")) + "\n"
    data = line.encode("ascii")
    with _out_lock:
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except (BrokenPipeError, OSError) as e:  # nobody to tell; keep serving
            log("stdout write failed: %s" % e)


class ToolError(Exception):
    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code
        self.message = message


def resolve(path):
    if not isinstance(path, str) or not path:
        raise ToolError("InvalidArguments", "path must be a non-empty string")
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(WORKSPACE, path))


def cap_text(text, max_chars):
    """Keep 40% head and 60% tail, say what was cut (mirrors capOutput in common/tools.ts)."""
    if len(text) <= max_chars:
        return text, False
    head = int(max_chars * 0.4)
    tail = max_chars - head
    cut = len(text) - head - tail
    return "%s\n[... %d characters cut; %d in total ...]\n%s" % (text[:head], cut, len(text), text[len(text) - tail:]), True


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


class Executor:
    def __init__(self, pool_lease_sec=None):
        self.lock = threading.Lock()
        # Pool containers start unclaimed with a lease their owner renews; see op_claim.
        self.claim = _read_json(CLAIM_PATH)
        self.pool_lease_sec = pool_lease_sec
        self.lease_until = None if pool_lease_sec is None else time.monotonic() + pool_lease_sec
        # key -> {"done": Event, "response": dict or None}
        self.keys = collections.OrderedDict()
        # request id -> (process group id, Event set once the group leader is reaped),
        # and request id -> key (for cancel)
        self.groups = {}
        self.key_of = {}
        self.cancelled = set()
        self.shell_seq = 0
        self.workers = Workers()
        self.snapshots = Snapshotter()
        os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
        try:
            os.makedirs(HOME_STATE_DIR, mode=0o755, exist_ok=True)
        except OSError as e:
            log("cannot create %s: %s" % (HOME_STATE_DIR, e))

    # --- dispatch -------------------------------------------------------

    def handle_line(self, raw):
        try:
            req = json.loads(raw)
            if not isinstance(req, dict):
                raise ValueError("request must be a JSON object")
        except ValueError as e:
            send({"id": None, "ok": False, "error": {"code": "BadRequest", "message": "malformed request: %s" % e}})
            return
        rid = req.get("id")
        if not isinstance(rid, (str, int)) or isinstance(rid, bool):
            send({"id": None, "ok": False, "error": {"code": "BadRequest", "message": "request id must be a string"}})
            return
        op = req.get("op")
        if op == "ping":  # answered inline: a liveness probe must not wait for a thread
            send(self.respond(rid, op, req.get("args")))
            return
        self.workers.submit(self.serve, rid, op, req.get("args"), req.get("key"))

    def serve(self, rid, op, args, key):
        if key is None:
            send(self.respond(rid, op, args))
            return
        key = str(key)
        with self.lock:
            entry = self.keys.get(key)
            owner = entry is None
            if owner:
                entry = {"done": threading.Event(), "response": None}
                self.keys[key] = entry
            self.key_of[rid] = key
        if owner:
            journal({"key": key, "phase": "start", "op": op, "at": time.time()})
            response = self.respond(rid, op, args)
            entry["response"] = response
            entry["done"].set()
            journal({"key": key, "phase": "done", "ok": response.get("ok"), "at": time.time()})
            self._trim()
        else:
            entry["done"].wait()
            response = dict(entry["response"], id=rid, replayed=True)
        with self.lock:
            self.key_of.pop(rid, None)
        send(response)

    def _trim(self):
        with self.lock:
            while len(self.keys) > MAX_KEYS:
                oldest = next(iter(self.keys))
                if not self.keys[oldest]["done"].is_set():
                    break
                del self.keys[oldest]

    def respond(self, rid, op, args):
        if args is None:
            args = {}
        handler = getattr(self, "op_" + op, None) if isinstance(op, str) else None
        if handler is None or not isinstance(args, dict):
            code, msg = ("UnknownOp", "unknown op %r" % (op,)) if handler is None else ("BadRequest", "args must be an object")
            return {"id": rid, "ok": False, "error": {"code": code, "message": msg}}
        try:
            return {"id": rid, "ok": True, "result": handler(rid, args)}
        except ToolError as e:
            return {"id": rid, "ok": False, "error": {"code": e.code, "message": e.message}}
        except Exception as e:  # a bug here must not take the executor down
            log("op %s failed: %r" % (op, e))
            return {"id": rid, "ok": False, "error": {"code": "Internal", "message": "%s: %s" % (type(e).__name__, e)}}

    # --- ops ------------------------------------------------------------

    def op_ping(self, rid, args):
        return {"pong": True, "pid": os.getpid(), "restoredFrom": self.snapshots.restored_from(), "claim": self.claim}

    # --- warm pool ------------------------------------------------------
    # A pool container is started before any session needs it, with --pool-lease N:
    # unless claimed, it exits N seconds after the last `lease`, so the pool of a
    # worker that died stops by itself (and the reaper removes it). `claim` binds it
    # to one session for good: a second session is refused.

    def op_claim(self, rid, args):
        session, generation = args.get("session"), args.get("generation")
        if not isinstance(session, str) or not session or not isinstance(generation, int):
            raise ToolError("InvalidArguments", "session (string) and generation (integer) are required")
        with self.lock:
            if self.pool_lease_sec is None:
                raise ToolError("NotPooled", "this container was created for its session, not for a pool")
            if self.claim is None:
                if self.lease_until is not None and time.monotonic() > self.lease_until:
                    raise ToolError("LeaseExpired", "this pool container's lease ran out; it is shutting down")
                self.claim = {"session": session, "generation": generation, "at": time.time()}
                self.lease_until = None
                with open(CLAIM_PATH, "w") as f:
                    json.dump(self.claim, f)
            elif self.claim.get("session") != session or self.claim.get("generation") != generation:
                raise ToolError("AlreadyClaimed", "this container serves session %s generation %s" % (self.claim.get("session"), self.claim.get("generation")))
            return {"claim": self.claim}

    def op_lease(self, rid, args):
        with self.lock:
            if self.claim is None and self.lease_until is not None:
                self.lease_until = time.monotonic() + self.pool_lease_sec
            return {"claimed": self.claim is not None}

    def watch_lease(self):
        """Exit the container when an unclaimed pool lease runs out."""
        while True:
            time.sleep(1)
            with self.lock:
                if self.claim is None and self.lease_until is not None and time.monotonic() > self.lease_until:
                    log("pool lease expired unclaimed; exiting")
                    os._exit(0)

    # --- snapshots (see Snapshotter) --------------------------------------

    def op_snapshot(self, rid, args):
        return self.snapshots.snapshot(args.get("parent"), min(int(args.get("inline") or 0), MAX_READ_BATCH))

    def op_load_manifest(self, rid, args):
        return self.snapshots.load_manifest(args.get("id"), args.get("manifest"))

    def op_get_manifest(self, rid, args):
        return self.snapshots.get_manifest(args.get("id"), int(args.get("offset") or 0), int(args.get("length") or 0))

    def op_read_files(self, rid, args):
        return self.snapshots.read_files(args.get("items"))

    def op_restore_begin(self, rid, args):
        return self.snapshots.restore_begin(args.get("id"), args.get("manifest"))

    def op_write_files(self, rid, args):
        return self.snapshots.write_files(args.get("items"))

    def op_restore_finish(self, rid, args):
        return self.snapshots.restore_finish(args.get("id"))

    def op_cancel(self, rid, args):
        target = args.get("target")
        with self.lock:
            group = self.groups.get(target)
            if group is None and target in self.key_of:
                # The target may be waiting on a key another request owns.
                key = self.key_of[target]
                for other, k in self.key_of.items():
                    if k == key and other in self.groups:
                        group = self.groups[other]
                        target = other
                        break
            if group is not None:
                self.cancelled.add(target)
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

    def op_read_file(self, rid, args):
        path = resolve(args.get("path"))
        offset = int(args.get("offset") or 1)
        limit = int(args.get("limit") or DEFAULT_READ_LIMIT)
        max_chars = int(args.get("maxOutput") or DEFAULT_MAX_OUTPUT)
        data = _read_bytes(path)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError("Binary", "%s is not a UTF-8 text file (%d bytes)" % (path, len(data)))
        lines = text.splitlines()
        start = max(offset, 1) - 1
        chosen = lines[start:start + limit]
        body = "".join("%6d\t%s\n" % (start + i + 1, line) for i, line in enumerate(chosen))
        content, truncated = cap_text(body, max_chars)
        return {
            "path": path,
            "content": content,
            "totalLines": len(lines),
            "firstLine": start + 1,
            "lastLine": start + len(chosen),
            "truncated": truncated or start + len(chosen) < len(lines),
        }

    def op_write_file(self, rid, args):
        path = resolve(args.get("path"))
        content = args.get("content")
        if not isinstance(content, str):
            raise ToolError("InvalidArguments", "content must be a string")
        data = content.encode("utf-8")
        _write_bytes(path, data)
        return {"path": path, "bytes": len(data)}

    def op_edit_file(self, rid, args):
        path = resolve(args.get("path"))
        old, new = args.get("old_string"), args.get("new_string")
        if not isinstance(old, str) or not old or not isinstance(new, str):
            raise ToolError("InvalidArguments", "old_string (non-empty) and new_string must be strings")
        data = _read_bytes(path)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError("Binary", "%s is not a UTF-8 text file" % path)
        count = text.count(old)
        if count == 0:
            raise ToolError("NoMatch", "old_string was not found in %s; read the file and copy the text exactly" % path)
        if count > 1:
            raise ToolError("Ambiguous", "old_string occurs %d times in %s; include more surrounding text so it occurs once" % (count, path))
        _write_bytes(path, text.replace(old, new, 1).encode("utf-8"))
        return {"path": path, "replacements": 1}

    def op_list_files(self, rid, args):
        path = resolve(args.get("path") or WORKSPACE)
        recursive = bool(args.get("recursive"))
        if not os.path.exists(path):
            raise ToolError("NotFound", "%s does not exist" % path)
        if not os.path.isdir(path):
            raise ToolError("NotADirectory", "%s is not a directory" % path)
        entries = []
        truncated = False
        try:
            if recursive:
                for dirpath, dirnames, filenames in os.walk(path):
                    rel = os.path.relpath(dirpath, path)
                    prefix = "" if rel == "." else rel + "/"
                    # .git is listed but not descended into: it is noise to an agent.
                    for d in dirnames:
                        entries.append(prefix + d + "/")
                    dirnames[:] = [d for d in dirnames if d != ".git"]
                    entries.extend(prefix + f for f in filenames)
                    if len(entries) > MAX_LIST_ENTRIES * 10:
                        truncated = True
                        break
            else:
                with os.scandir(path) as it:
                    for e in it:
                        entries.append(e.name + "/" if e.is_dir() else e.name)
        except PermissionError as e:
            raise ToolError("PermissionDenied", str(e))
        entries.sort()
        if len(entries) > MAX_LIST_ENTRIES:
            entries = entries[:MAX_LIST_ENTRIES]
            truncated = True
        return {"path": path, "entries": entries, "truncated": truncated}


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


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ToolError("NotFound", "%s does not exist" % path)
    except IsADirectoryError:
        raise ToolError("IsADirectory", "%s is a directory; use list_files" % path)
    except PermissionError:
        raise ToolError("PermissionDenied", "permission denied: %s" % path)


def _write_bytes(path, data):
    try:
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    except IsADirectoryError:
        raise ToolError("IsADirectory", "%s is a directory" % path)
    except NotADirectoryError:
        raise ToolError("NotADirectory", "a parent of %s is not a directory" % path)
    except PermissionError:
        raise ToolError("PermissionDenied", "permission denied: %s" % path)
    except OSError as e:
        raise ToolError("IOError", "%s: %s" % (path, e.strerror or e))


def _entry_json(e, esc=json.encoder.encode_basestring_ascii):
    """json.dumps(e, ensure_ascii=True, separators=(",", ":")) for a manifest entry, byte for byte, at a
    fraction of the cost (the walk's biggest item after stat): the same C string escaper, fixed key order."""
    t = e["type"]
    if t == "file":
        return '{"path":%s,"type":"file","mode":%d,"size":%d,"sha":"%s"}' % (esc(e["path"]), e["mode"], e["size"], e["sha"])
    if t == "dir":
        return '{"path":%s,"type":"dir","mode":%d}' % (esc(e["path"]), e["mode"])
    return '{"path":%s,"type":"symlink","target":%s}' % (esc(e["path"]), esc(e["target"]))


def _canonical(entries):
    """The manifest text: ASCII JSON, entries sorted by path, fixed key order. Its sha256 is the snapshot id."""
    body = ",".join(_entry_json(e) for e in entries)
    return '{"version":%d,"roots":%s,"entries":[%s]}' % (
        MANIFEST_VERSION, json.dumps(list(SNAPSHOT_ROOTS), separators=(",", ":")), body)


def _read_small(path, sha):
    """A file's bytes if they still hash to sha, else None (changed since the walk, or unreadable)."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    return blob if hashlib.sha256(blob).hexdigest() == sha else None


def _entry_key(e):
    """What makes two entries of one path equal."""
    t = e["type"]
    if t == "file":
        return (t, e["mode"], e["sha"])
    if t == "symlink":
        return (t, e["target"])
    return (t, e["mode"])


def _under_roots(path):
    if not isinstance(path, str):
        return False
    norm = os.path.normpath(path)
    return norm == path and any(path == r or path.startswith(r + "/") for r in SNAPSHOT_ROOTS)


class Manifest:
    def __init__(self, mid, text, entries):
        self.id = mid
        self.text = text
        self.entries = entries  # list, sorted by path
        self.by_path = {e["path"]: e for e in entries}


class Snapshotter:
    """Content-addressed snapshots of SNAPSHOT_ROOTS, and restores into them."""

    def __init__(self):
        self.lock = threading.Lock()  # one walk or restore at a time: the stat cache is shared
        self.mlock = threading.Lock()  # guards self.manifests
        # path -> ((size, mtime_ns, ctime_ns, ino), sha, racy)
        self.cache = {}
        self.manifests = collections.OrderedDict()
        self._restored = None
        try:
            with open(RESTORED_MARKER) as f:
                self._restored = f.read().strip() or None
        except OSError:
            pass

    def restored_from(self):
        return self._restored

    # --- manifests ------------------------------------------------------

    def _remember(self, manifest):
        with self.mlock:
            self.manifests[manifest.id] = manifest
            self.manifests.move_to_end(manifest.id)
            while len(self.manifests) > MAX_MANIFESTS:
                self.manifests.popitem(last=False)

    def _manifest(self, mid):
        with self.mlock:
            return self.manifests.get(mid)

    def _parse(self, mid, text):
        if not isinstance(mid, str) or not isinstance(text, str):
            raise ToolError("InvalidArguments", "id and manifest must be strings")
        data = text.encode("ascii", "strict") if text.isascii() else None
        if data is None or hashlib.sha256(data).hexdigest() != mid:
            raise ToolError("ManifestMismatch", "manifest text does not hash to %s" % mid)
        doc = json.loads(text)
        if doc.get("version") != MANIFEST_VERSION:
            raise ToolError("ManifestVersion", "manifest version %r is not %d" % (doc.get("version"), MANIFEST_VERSION))
        entries = doc.get("entries") or []
        for e in entries:
            if not _under_roots(e.get("path")) or e.get("type") not in ("dir", "file", "symlink"):
                raise ToolError("BadManifest", "manifest entry outside %s or of unknown type: %r" % (SNAPSHOT_ROOTS, e)[:300])
        return Manifest(mid, text, entries)

    def load_manifest(self, mid, text):
        m = self._parse(mid, text)
        self._remember(m)
        return {"id": mid, "entries": len(m.entries)}

    def get_manifest(self, mid, offset, length):
        m = self._manifest(mid)
        if m is None:
            raise ToolError("UnknownManifest", "manifest %s is not held by this executor" % mid)
        end = len(m.text) if length <= 0 else min(len(m.text), offset + length)
        return {"id": mid, "data": m.text[offset:end], "total": len(m.text)}

    # --- snapshot -------------------------------------------------------

    def _hash(self, path, st):
        """sha256 and byte count of a file; makes an owner-unreadable file readable for the read."""
        h = hashlib.sha256()
        n = 0
        restore_mode = None
        try:
            try:
                f = open(path, "rb", buffering=0)
            except PermissionError:
                if st.st_uid != os.getuid():
                    raise
                restore_mode = stat.S_IMODE(st.st_mode)
                os.chmod(path, restore_mode | stat.S_IRUSR)
                f = open(path, "rb", buffering=0)
            with f:
                while True:
                    chunk = f.read(HASH_CHUNK)
                    if not chunk:
                        break
                    h.update(chunk)
                    n += len(chunk)
        finally:
            if restore_mode is not None:
                os.chmod(path, restore_mode)
        return h.hexdigest(), n

    def _walk(self, stats):
        """Every entry under the roots, sorted by path. Hashes only files the stat cache cannot vouch for."""
        walk_ns = time.time_ns()
        entries = []
        seen = set()
        for root in SNAPSHOT_ROOTS:
            try:
                st = os.lstat(root)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            entries.append({"path": root, "type": "dir", "mode": stat.S_IMODE(st.st_mode)})
            stack = [root]
            while stack:
                d = stack.pop()
                try:
                    it = os.scandir(d)
                except OSError as e:
                    stats["skipped"] += 1
                    log("snapshot: cannot list %s: %s" % (d, e))
                    continue
                with it:
                    for de in it:
                        p = de.path
                        try:
                            st = de.stat(follow_symlinks=False)
                        except OSError:
                            continue  # vanished
                        mode = st.st_mode
                        if stat.S_ISDIR(mode):
                            entries.append({"path": p, "type": "dir", "mode": stat.S_IMODE(mode)})
                            stack.append(p)
                        elif stat.S_ISLNK(mode):
                            try:
                                target = os.readlink(p)
                            except OSError:
                                continue
                            entries.append({"path": p, "type": "symlink", "target": target})
                        elif stat.S_ISREG(mode):
                            key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
                            cached = self.cache.get(p)
                            if cached is not None and cached[0] == key and not cached[2]:
                                sha, size = cached[1], st.st_size
                            else:
                                try:
                                    sha, size = self._hash(p, st)
                                except OSError as e:
                                    stats["skipped"] += 1
                                    log("snapshot: cannot read %s: %s" % (p, e))
                                    continue
                                stats["filesHashed"] += 1
                                stats["bytesHashed"] += size
                                racy = size != st.st_size or max(st.st_mtime_ns, st.st_ctime_ns) >= walk_ns - RACY_NS
                                self.cache[p] = (key, sha, racy)
                            seen.add(p)
                            entries.append({"path": p, "type": "file", "mode": stat.S_IMODE(mode), "size": size, "sha": sha})
                        else:
                            stats["skipped"] += 1  # sockets, fifos, devices: not state worth keeping
        for p in [p for p in self.cache if p not in seen]:
            del self.cache[p]
        entries.sort(key=lambda e: e["path"])
        return entries

    def snapshot(self, parent, inline=0):
        started = time.monotonic()
        with self.lock:
            base = None
            if parent is not None:
                base = self._manifest(parent)
                if base is None:
                    raise ToolError("UnknownParent", "manifest %s is not held by this executor; send it with load_manifest" % parent)
            stats = {"filesHashed": 0, "bytesHashed": 0, "skipped": 0}
            entries = self._walk(stats)
            text = _canonical(entries)
            mid = hashlib.sha256(text.encode("ascii")).hexdigest()
            manifest = Manifest(mid, text, entries)
            self._remember(manifest)
        files = [e for e in entries if e["type"] != "dir"]
        result = {
            "id": mid,
            "parent": parent,
            "unchanged": parent == mid,
            "entries": len(entries),
            "files": len(files),
            "bytes": sum(e.get("size", 0) for e in files),
            "manifestBytes": len(text),
        }
        result.update(stats)
        old = base.by_path if base is not None else {}
        added = modified = removed = changed_bytes = 0
        upload = {}
        for e in entries:
            if e["path"] in SNAPSHOT_ROOTS and not old:
                continue  # the roots exist in every sandbox; an empty parent does not "add" them
            prev = old.get(e["path"])
            if prev is not None and _entry_key(prev) == _entry_key(e):
                continue
            if prev is None:
                added += 1
            else:
                modified += 1
            if e["type"] == "file":
                changed_bytes += e["size"]
                upload.setdefault(e["sha"], [e["sha"], e["path"], e["size"]])
        if old:
            removed = sum(1 for p in old if p not in manifest.by_path)
        result.update({
            "added": added,
            "modified": modified,
            "removed": removed,
            "changedBytes": changed_bytes,
            "upload": list(upload.values()),
        })
        if inline > 0 and mid != parent:
            # Small snapshots travel in this one answer: the manifest and the changed files'
            # contents (re-read and re-checked here; the host verifies every hash again).
            if len(text) <= MAX_READ_BATCH:
                result["manifest"] = text
            data = {}
            budget = inline
            for sha, path, size in upload.values():
                if size > budget:
                    continue
                blob = _read_small(path, sha)
                if blob is not None:
                    data[sha] = base64.b64encode(blob).decode("ascii")
                    budget -= size
            result["data"] = data
        result["durationMs"] = int((time.monotonic() - started) * 1000)
        return result

    # --- transfer -------------------------------------------------------

    def read_files(self, items):
        """Byte ranges of files, base64. One item: {path, offset, length}; the batch is capped at MAX_READ_BATCH bytes."""
        if not isinstance(items, list):
            raise ToolError("InvalidArguments", "items must be a list")
        out = []
        budget = MAX_READ_BATCH
        for it in items:
            path = it.get("path")
            if not _under_roots(path):
                raise ToolError("InvalidArguments", "%r is not under %s" % (path, SNAPSHOT_ROOTS))
            offset = int(it.get("offset") or 0)
            length = max(0, min(int(it.get("length") or 0), budget))
            try:
                st = os.lstat(path)
                if not stat.S_ISREG(st.st_mode):
                    out.append({"error": "NotAFile"})
                    continue
                restore_mode = None
                try:
                    fd = os.open(path, os.O_RDONLY)
                except PermissionError:
                    restore_mode = stat.S_IMODE(st.st_mode)
                    os.chmod(path, restore_mode | stat.S_IRUSR)
                    fd = os.open(path, os.O_RDONLY)
                try:
                    data = os.pread(fd, length, offset) if length else b""
                finally:
                    os.close(fd)
                    if restore_mode is not None:
                        os.chmod(path, restore_mode)
            except FileNotFoundError:
                out.append({"error": "NotFound"})
                continue
            budget -= len(data)
            out.append({"data": base64.b64encode(data).decode("ascii"), "size": st.st_size})
        return {"items": out}

    # --- restore --------------------------------------------------------

    def restore_begin(self, mid, text):
        """Empty the roots, then create the snapshot's directories, symlinks and (empty) files."""
        if text is not None:
            self.load_manifest(mid, text)
        m = self._manifest(mid)
        if m is None:
            raise ToolError("UnknownManifest", "manifest %s is not held by this executor; send it" % mid)
        with self.lock:
            self._restored = None
            try:
                os.unlink(RESTORED_MARKER)
            except OSError:
                pass
            for root in SNAPSHOT_ROOTS:
                _empty_dir(root)
            self.cache.clear()
            files = 0
            for e in m.entries:  # sorted: a directory comes before what it holds
                p = e["path"]
                if e["type"] == "dir":
                    if p in SNAPSHOT_ROOTS:
                        continue
                    os.mkdir(p, 0o700)
                elif e["type"] == "symlink":
                    os.symlink(e["target"], p)
                else:
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    os.close(fd)
                    files += 1
        return {"id": mid, "files": files}

    def write_files(self, items):
        """Write base64 data into files restore_begin created: {path, offset, data}."""
        if not isinstance(items, list):
            raise ToolError("InvalidArguments", "items must be a list")
        written = 0
        for it in items:
            path = it.get("path")
            if not _under_roots(path):
                raise ToolError("InvalidArguments", "%r is not under %s" % (path, SNAPSHOT_ROOTS))
            data = base64.b64decode(it.get("data") or "")
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, data, int(it.get("offset") or 0))
            finally:
                os.close(fd)
            written += len(data)
        return {"bytes": written}

    def restore_finish(self, mid):
        """Verify every file against the manifest, apply modes (directories deepest first), prime the stat cache."""
        m = self._manifest(mid)
        if m is None:
            raise ToolError("UnknownManifest", "manifest %s is not held by this executor" % mid)
        hashed = 0
        with self.lock:
            bad = []
            for e in m.entries:
                if e["type"] != "file":
                    continue
                p = e["path"]
                st = os.lstat(p)
                sha, n = self._hash(p, st)
                hashed += n
                if sha != e["sha"] or n != e["size"]:
                    bad.append(p)
                    continue
                os.chmod(p, e["mode"])
                st = os.lstat(p)
                # Written by us with nothing else running: clean, so the next snapshot reads nothing.
                self.cache[p] = ((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino), sha, False)
            if bad:
                raise ToolError("RestoreMismatch", "%d restored files differ from snapshot %s, e.g. %s" % (len(bad), mid, bad[:5]))
            for e in sorted((e for e in m.entries if e["type"] == "dir"), key=lambda e: e["path"].count("/"), reverse=True):
                os.chmod(e["path"], e["mode"])
            self._restored = mid
            with open(RESTORED_MARKER, "w") as f:
                f.write(mid)
        return {"id": mid, "bytesHashed": hashed}


def _empty_dir(root):
    """Remove everything inside root (not root itself), including read-only subtrees the owner can unlock."""
    try:
        os.chmod(root, 0o755)
    except OSError:
        pass

    def unlock(func, path, exc_info):
        parent = os.path.dirname(path)
        try:
            os.chmod(parent, 0o700)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
        except OSError:
            pass
        func(path)

    try:
        names = os.listdir(root)
    except FileNotFoundError:
        os.makedirs(root)
        return
    for name in names:
        p = os.path.join(root, name)
        if os.path.isdir(p) and not os.path.islink(p):
            try:
                os.chmod(p, 0o700)
            except OSError:
                pass
            shutil.rmtree(p, onerror=unlock)
        else:
            os.unlink(p)


_journal_lock = threading.Lock()
_journal_fd = None


def journal(record):
    """Append one small record (key, phase, outcome) to the on-disk trace of keyed calls, for a person
    debugging a sandbox. Nothing reads it back: retries are answered from the in-memory table. The file stays open."""
    global _journal_fd
    data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "surrogateescape")
    with _journal_lock:
        try:
            if _journal_fd is not None:
                st = os.fstat(_journal_fd)
                if st.st_nlink == 0 or st.st_size > JOURNAL_MAX_BYTES:  # removed underneath us, or full
                    os.close(_journal_fd)
                    _journal_fd = None
                    if st.st_nlink > 0:
                        os.replace(JOURNAL_PATH, JOURNAL_PATH + ".1")
            if _journal_fd is None:
                os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
                _journal_fd = os.open(JOURNAL_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.write(_journal_fd, data)
        except OSError as e:
            log("journal write failed: %s" % e)


class Workers:
    """Threads for requests, reused: starting a thread per request costs more than the rest of a ping."""

    def __init__(self):
        self.lock = threading.Lock()
        self.queue = queue.SimpleQueue()
        self.idle = 0

    def submit(self, fn, *args):
        with self.lock:
            if self.idle > 0:
                self.idle -= 1
                self.queue.put((fn, args))
                return
        threading.Thread(target=self._run, args=(fn, args), daemon=True).start()

    def _run(self, fn, args):
        while True:
            try:
                fn(*args)
            except Exception as e:  # serve() answers its own errors; this is a last resort
                log("request worker: %r" % e)
            with self.lock:
                self.idle += 1
            fn, args = self.queue.get()


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# The executor is the container's PID 1, so every orphaned process becomes its child.
# Its own shells are reaped by their callers (CHILDREN); everything else by reap_orphans.
SPAWN_LOCK = threading.Lock()
CHILDREN = set()


def _processes():
    """(pid, state, ppid, pgrp) of every process in the container, from /proc."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2:
            yield int(name), fields[0], int(fields[1]), int(fields[2])


def reap_orphans(pgrp=None):
    """Collect exited orphans (of process group `pgrp` only, when given). Returns how many
    processes of that group are still alive. A no-op unless we are PID 1."""
    if os.getpid() != 1:
        return 0
    alive = 0
    with SPAWN_LOCK:
        for pid, state, ppid, group in _processes():
            if pgrp is not None and group != pgrp:
                continue
            if state == b"Z" and ppid == 1 and pid not in CHILDREN:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            elif state != b"Z":
                alive += 1
    return alive


def reap_group(pgrp, timeout=1.0):
    """After SIGKILL to a process group: wait until none of it is left, zombies included,
    so a caller told "killed" can rely on it."""
    deadline = time.monotonic() + timeout
    while reap_orphans(pgrp) and time.monotonic() < deadline:
        time.sleep(0.005)
    reap_orphans(pgrp)


def _reap_forever():
    while True:
        time.sleep(1.0)
        reap_orphans()


def _not_dumpable():
    """Commands run as our uid. Without this they could open /proc/<our pid>/fd/0 and fd/1,
    the protocol's stdin and stdout, to steal requests or forge answers."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE, 0
            log("prctl(PR_SET_DUMPABLE) failed: errno %d" % ctypes.get_errno())
    except Exception as e:  # an executor without this is weaker, not broken
        log("cannot make the executor non-dumpable: %s" % e)


def main():
    _not_dumpable()
    lease = None
    if len(sys.argv) == 3 and sys.argv[1] == "--pool-lease":
        lease = float(sys.argv[2])
    executor = Executor(lease)
    if lease is not None:
        threading.Thread(target=executor.watch_lease, daemon=True).start()
    if os.getpid() == 1:
        threading.Thread(target=_reap_forever, daemon=True).start()
    log("ready (pid %d%s)" % (os.getpid(), ", pool lease %gs" % lease if lease is not None else ""))
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            # See the module docstring: normally unreachable with OpenStdin and
            # StdinOnce=false. Stay up rather than stop the container.
            log("stdin closed; still running, no further requests can arrive")
            threading.Event().wait()
        line = line.strip()
        if line:
            executor.handle_line(line)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
