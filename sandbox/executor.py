#!/usr/bin/env python3
"""Keel sandbox executor: the one long-lived process of a sandbox container.

Protocol: JSON lines. A request on stdin is
    {"id": "<request id>", "op": "<op>", "args": {...}, "key": "<idempotency key>"}
and every request gets exactly one line on stdout:
    {"id": ..., "ok": true, "result": {...}}  or
    {"id": ..., "ok": false, "error": {"code": "...", "message": "..."}}
Diagnostics go to stderr only. Requests run concurrently, one thread each.

Idempotency: a request whose key has already completed gets the recorded
response again (under its own id) without running; one whose key is still
running waits for it. Keys are kept in memory (the last MAX_KEYS) and appended
to JOURNAL_PATH.

Stdin EOF: Docker keeps a container's stdin open across attaches when the
container was created with OpenStdin=true and StdinOnce=false, so a client
that detaches or dies does not end it. If stdin does end anyway, the executor
keeps running (it is the container's main process) and finishes what it has.

Python 3 standard library only.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time

WORKSPACE = "/workspace"
STATE_DIR = "/tmp/.keel"
SHELL_STATE = os.path.join(STATE_DIR, "shell-state")
JOURNAL_PATH = os.path.join(STATE_DIR, "journal")
JOURNAL_MAX_BYTES = 16 * 1024 * 1024
MAX_KEYS = 1000
DEFAULT_MAX_OUTPUT = 16000
DEFAULT_TIMEOUT_SEC = 120
MAX_LIST_ENTRIES = 1000
DEFAULT_READ_LIMIT = 2000
# After bash exits, how long to keep collecting output from children that
# still hold the pipe (background jobs) before returning.
DRAIN_GRACE_SEC = 0.2

# Runs the user's command. The command arrives in $KEEL_CMD and is eval'd, never
# spliced into this text. State (exported variables and cwd) is restored first
# and saved by the EXIT trap, so `cd` and `export` persist between calls without
# a long-lived shell, and survive an executor restart.
SHELL_SCRIPT = r"""
__keel_state=$KEEL_STATE
__keel_cmd=$KEEL_CMD
unset KEEL_CMD KEEL_STATE
if [ -r "$__keel_state" ]; then
  for __keel_n in $(compgen -e); do unset "$__keel_n" 2>/dev/null; done
  . "$__keel_state" 2>/dev/null
  if [ -n "${__keel_cwd-}" ] && ! cd -- "$__keel_cwd" 2>/dev/null; then
    cd /workspace 2>/dev/null || cd /
    echo "[keel: the previous working directory $__keel_cwd no longer exists; now in $PWD]" >&2
  fi
fi
unset __keel_n __keel_cwd
__keel_save() {
  local rc=$?
  { export -p; printf '__keel_cwd=%q\n' "$PWD"; } \
    >"$__keel_state.$$" 2>/dev/null && mv -f "$__keel_state.$$" "$__keel_state"
  exit "$rc"
}
trap __keel_save EXIT
eval "$__keel_cmd"
"""

_out_lock = threading.Lock()


def log(msg):
    sys.stderr.write("executor: %s\n" % msg)
    sys.stderr.flush()


def send(obj):
    line = json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"
    data = line.encode("utf-8", "replace")
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
    """Reads a pipe to EOF, keeping a head and a rolling tail, so huge output never blocks the child."""

    def __init__(self, fd, max_chars):
        self.fd = fd
        self.max_chars = max_chars
        # Four bytes per character covers any UTF-8 text.
        self.head_limit = max_chars * 4
        self.tail_limit = max_chars * 4
        self.head = bytearray()
        self.tail = bytearray()
        self.total_bytes = 0
        self.total_chars = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while True:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
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
        except OSError:
            pass
        finally:
            try:
                os.close(self.fd)
            except OSError:
                pass

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
    def __init__(self):
        self.lock = threading.Lock()
        # key -> {"done": Event, "response": dict or None}
        self.keys = collections.OrderedDict()
        # request id -> (process group id, Event set once the group leader is reaped),
        # and request id -> key (for cancel)
        self.groups = {}
        self.key_of = {}
        self.cancelled = set()
        os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)

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
        threading.Thread(target=self.serve, args=(rid, op, req.get("args"), req.get("key")), daemon=True).start()

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
            journal({"key": key, "phase": "done", "response": response, "at": time.time()})
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
        return {"pong": True, "pid": os.getpid()}

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
        return {"cancelled": True, "finished": reaped.wait(10)}

    def op_shell(self, rid, args):
        command = args.get("command")
        if not isinstance(command, str) or not command:
            raise ToolError("InvalidArguments", "command must be a non-empty string")
        timeout = args.get("timeoutSec") or DEFAULT_TIMEOUT_SEC
        max_chars = int(args.get("maxOutput") or DEFAULT_MAX_OUTPUT)
        env = dict(os.environ, KEEL_CMD=command, KEEL_STATE=SHELL_STATE)
        cwd = WORKSPACE if os.path.isdir(WORKSPACE) else "/"
        read_fd, write_fd = os.pipe()
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                ["bash", "-c", SHELL_SCRIPT],
                stdin=subprocess.DEVNULL,  # never the protocol's stdin
                stdout=write_fd,
                stderr=write_fd,  # one pipe: stdout and stderr interleave as on a terminal
                cwd=cwd,
                env=env,
                start_new_session=True,  # own process group, so a timeout kills all of it
            )
        except Exception:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        capture = OutputCapture(read_fd, max_chars)
        reaped = threading.Event()
        with self.lock:
            self.groups[rid] = (proc.pid, reaped)
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        finally:
            with self.lock:
                self.groups.pop(rid, None)
                cancelled = rid in self.cancelled
                self.cancelled.discard(rid)
            reaped.set()
        # Background jobs may still hold the pipe; give them a moment, then
        # return without them (the reader keeps draining so they never block).
        capture.thread.join(DRAIN_GRACE_SEC)
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


_journal_lock = threading.Lock()


def journal(record):
    """Append one record to the on-disk journal (a later restore can read it back)."""
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    with _journal_lock:
        try:
            if os.path.exists(JOURNAL_PATH) and os.path.getsize(JOURNAL_PATH) > JOURNAL_MAX_BYTES:
                os.replace(JOURNAL_PATH, JOURNAL_PATH + ".1")
            with open(JOURNAL_PATH, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as e:
            log("journal write failed: %s" % e)


def main():
    executor = Executor()
    log("ready (pid %d)" % os.getpid())
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
