"""The JSON-lines server: requests in, exactly one answer each, idempotency keys.

Protocol: JSON lines. A request on stdin is
    {"id": "<request id>", "op": "<op>", "args": {...}, "key": "<idempotency key>"}
and every request gets exactly one line on stdout:
    {"id": ..., "ok": true, "result": {...}}  or
    {"id": ..., "ok": false, "error": {"code": "...", "message": "..."}}
Diagnostics go to stderr only. Requests run concurrently on pre-started worker
threads (ping inline; cancel and lease on two threads of their own, so they never
queue behind long commands); a shell request waits on its output pipe and the
child's pidfd in that one thread. The ops themselves live in the other modules;
this one only knows them as a table (op name -> handler(rid, args), see
__main__), and turns a ToolError into the error answer.

Idempotency: a key is bound to the sha256 of the canonical JSON of {op, args}
(request_hash). A request whose key has completed with the same hash gets the
recorded answer again (under its own id, `replayed: true`) without running; one
whose key is still running waits for it; one whose key was used with a different
hash is refused with `KeyConflict` and runs nothing. Answers are held in memory
only, out of the commands' reach: the last MAX_KEYS keys and at most
MAX_ANSWER_BYTES of answers (the oldest finished ones go first). A key whose
answer was dropped is still remembered (its hash, up to MAX_FORGOTTEN keys): a
repeat is refused with `KeyExpired` rather than run again. A short trace of keyed
calls (key, phase, outcome) goes to JOURNAL_PATH in the root-only STATE_DIR, for
a person debugging a sandbox; nothing reads it back.

Stdin EOF: Docker keeps a container's stdin open across attaches when the
container was created with OpenStdin=true and StdinOnce=false, so a client
that detaches or dies does not end it. If stdin does end anyway, the executor
keeps running (it is the container's main process) and finishes what it has.

Threads: every thread this module starts is started with the executor, because
a fork bomb can take every free pid (threads count against the pids limit too),
and requests must still be served; more are started when there is room.
"""

import collections
import hashlib
import json
import os
import queue
import select
import sys
import threading
import time

from . import privileges
from .layout import STATE_DIR
from .tools import ToolError

JOURNAL_PATH = os.path.join(STATE_DIR, "journal")
JOURNAL_MAX_BYTES = 1024 * 1024
MAX_KEYS = 1000
# Answers held for replay, in bytes of their JSON lines (a shell answer with `full` can be ~14 MB).
MAX_ANSWER_BYTES = 64 * 1024 * 1024
# Keys whose answers were dropped, remembered by hash so a repeat is refused, not run again.
MAX_FORGOTTEN = 10000
# Worker threads started with the executor (see the module docstring), and for cancel and lease.
PRESTARTED_WORKERS = 12
CONTROL_WORKERS = 2
CONTROL_OPS = frozenset(("cancel", "lease"))

_out_lock = threading.Lock()


def log(msg):
    sys.stderr.write("executor: %s\n" % msg)
    sys.stderr.flush()


def encode(obj):
    # ensure_ascii: CPython's non-ASCII encoder runs at ~85 MB/s on large strings
    # (snapshot transfers), the ASCII one at ~450 MB/s; and lone surrogates from
    # undecodable file names survive as \udcXX escapes instead of being replaced.
    return (json.dumps(obj, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def send_line(data):
    """Write one whole line to stdout. A write may take only part of it (gVisor's stdout pipe takes at
    most 64 KiB per write, where Linux blocks until all is written), so loop until every byte is out."""
    with _out_lock:
        fd = sys.stdout.fileno()
        view = memoryview(data)
        try:
            while view:
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:
                    select.select([], [fd], [])
        except OSError as e:  # nobody to tell; keep serving
            log("stdout write failed: %s" % e)


def send(obj):
    send_line(encode(obj))


def request_hash(op, args):
    """sha256 of the canonical JSON of {op, args}: what a key is bound to."""
    text = json.dumps({"op": op, "args": args}, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _error(rid, code, message):
    return {"id": rid, "ok": False, "error": {"code": code, "message": message}}


class _Entry:
    __slots__ = ("hash", "done", "response", "bytes")

    def __init__(self, digest):
        self.hash = digest
        self.done = threading.Event()
        self.response = None
        self.bytes = 0


class Server:
    def __init__(self, ops):
        # op name -> handler(rid, args), returning the result or raising ToolError
        self.ops = ops
        self.lock = threading.Lock()
        # key -> _Entry, oldest first
        self.keys = collections.OrderedDict()
        self.answer_bytes = 0
        # key -> hash, of keys whose answers were dropped
        self.forgotten = collections.OrderedDict()
        # request id -> key (for cancel)
        self.key_of = {}
        self.workers = Workers()

    def run(self, stdin):
        """Serve the requests on stdin (a binary stream of JSON lines) for good."""
        while True:
            line = stdin.readline()
            if not line:
                # See the module docstring: normally unreachable with OpenStdin and
                # StdinOnce=false. Stay up rather than stop the container.
                log("stdin closed; still running, no further requests can arrive")
                threading.Event().wait()
            line = line.strip()
            if line:
                self.handle_line(line)

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
        self.workers.submit(op in CONTROL_OPS, self.serve, rid, op, req.get("args"), req.get("key"))

    def serve(self, rid, op, args, key):
        if key is None:
            send(self.respond(rid, op, args))
            return
        key = str(key)
        digest = request_hash(op, args)
        with self.lock:
            entry = self.keys.get(key)
            refusal = None
            if entry is None:
                old = self.forgotten.get(key)
                if old == digest:
                    refusal = ("KeyExpired", "the answer to key %s is no longer held (the executor keeps the last %d answers, "
                               "%d MiB); it is not run again" % (key, MAX_KEYS, MAX_ANSWER_BYTES >> 20))
                elif old is not None:
                    refusal = ("KeyConflict", "key %s was used for a different request; nothing was run" % key)
            elif entry.hash != digest:
                refusal = ("KeyConflict", "key %s was used for a different request (not this %s); nothing was run" % (key, op))
            owner = entry is None and refusal is None
            if owner:
                entry = _Entry(digest)
                self.keys[key] = entry
            if refusal is None:
                self.key_of[rid] = key
        if refusal is not None:
            journal({"key": key, "phase": "refused", "code": refusal[0], "at": time.time()})
            send(_error(rid, *refusal))
            return
        if owner:
            journal({"key": key, "phase": "start", "op": op, "at": time.time()})
            response = self.respond(rid, op, args)
            line = encode(response)
            with self.lock:
                entry.response = response
                entry.bytes = len(line)
                self.answer_bytes += entry.bytes
            entry.done.set()
            journal({"key": key, "phase": "done", "ok": response.get("ok"), "at": time.time()})
            self._trim()
        else:
            entry.done.wait()
            line = encode(dict(entry.response, id=rid, replayed=True))
        with self.lock:
            self.key_of.pop(rid, None)
        send_line(line)

    def _trim(self):
        """Drop the oldest finished answers past MAX_KEYS or MAX_ANSWER_BYTES (running keys stay)."""
        with self.lock:
            if len(self.keys) <= MAX_KEYS and self.answer_bytes <= MAX_ANSWER_BYTES:
                return
            for key in list(self.keys):
                if len(self.keys) <= MAX_KEYS and self.answer_bytes <= MAX_ANSWER_BYTES:
                    break
                entry = self.keys[key]
                if not entry.done.is_set():
                    continue
                del self.keys[key]
                self.answer_bytes -= entry.bytes
                self.forgotten[key] = entry.hash
                while len(self.forgotten) > MAX_FORGOTTEN:
                    self.forgotten.popitem(last=False)

    def respond(self, rid, op, args):
        if args is None:
            args = {}
        handler = self.ops.get(op) if isinstance(op, str) else None
        if handler is None or not isinstance(args, dict):
            code, msg = ("UnknownOp", "unknown op %r" % (op,)) if handler is None else ("BadRequest", "args must be an object")
            return _error(rid, code, msg)
        try:
            return {"id": rid, "ok": True, "result": handler(rid, args)}
        except ToolError as e:
            return _error(rid, e.code, e.message)
        except Exception as e:  # a bug here must not take the executor down
            log("op %s failed: %r" % (op, e))
            return _error(rid, "Internal", "%s: %s" % (type(e).__name__, e))

    def requests_for(self, target):
        """The request ids a cancel of `target` may mean: target itself, then (when it waits on a
        key another request owns) every request of that key, the owner among them."""
        with self.lock:
            if target not in self.key_of:
                return [target]
            key = self.key_of[target]
            return [target] + [other for other, k in self.key_of.items() if k == key]


_journal_lock = threading.Lock()
_journal_fd = None


def journal(record):
    """Append one small record (key, phase, outcome) to the trace of keyed calls in the root-only
    STATE_DIR, for a person debugging a sandbox (`docker exec -u 0 <container> cat /run/keel/journal`).
    Nothing reads it back: retries are answered from the in-memory table. The file stays open."""
    global _journal_fd
    data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "surrogateescape")
    with _journal_lock, privileges.as_root_fs():
        try:
            if _journal_fd is not None:
                st = os.fstat(_journal_fd)
                if st.st_nlink == 0 or st.st_size > JOURNAL_MAX_BYTES:  # removed underneath us, or full
                    os.close(_journal_fd)
                    _journal_fd = None
                    if st.st_nlink > 0:
                        os.replace(JOURNAL_PATH, JOURNAL_PATH + ".1")
            if _journal_fd is None:
                _journal_fd = os.open(JOURNAL_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            os.write(_journal_fd, data)
        except OSError as e:
            log("journal write failed: %s" % e)


class Workers:
    """Threads for requests, reused, and started ahead (see the module docstring): starting a thread per
    request costs more than the rest of a ping, and under a fork bomb there may be no pid to start one."""

    def __init__(self, prestart=PRESTARTED_WORKERS, control=CONTROL_WORKERS):
        self.lock = threading.Lock()
        self.queue = queue.SimpleQueue()
        self.control = queue.SimpleQueue()
        self.idle = 0  # general threads waiting for work that no request has claimed yet
        self.backlog = 0  # requests queued when no thread was idle and none could be started
        for _ in range(prestart):
            with self.lock:
                self.idle += 1
            threading.Thread(target=self._run, args=(None, None), daemon=True).start()
        for _ in range(control):
            threading.Thread(target=self._control, daemon=True).start()

    def submit(self, control, fn, *args):
        if control:
            self.control.put((fn, args))
            return
        with self.lock:
            if self.idle > 0:
                self.idle -= 1
                self.queue.put((fn, args))
                return
        try:
            threading.Thread(target=self._run, args=(fn, args), daemon=True).start()
        except RuntimeError as e:  # no pid for a thread: the next free one takes it
            log("cannot start a request thread (%s); the request waits for a free one" % e)
            with self.lock:
                self.backlog += 1
            self.queue.put((fn, args))

    def _run(self, fn, args):
        privileges.use_sandbox_fs()
        while True:
            if fn is not None:
                try:
                    fn(*args)
                except Exception as e:  # serve() answers its own errors; this is a last resort
                    log("request worker: %r" % e)
                with self.lock:
                    if self.backlog > 0:
                        self.backlog -= 1
                    else:
                        self.idle += 1
            fn, args = self.queue.get()

    def _control(self):
        privileges.use_sandbox_fs()
        while True:
            fn, args = self.control.get()
            try:
                fn(*args)
            except Exception as e:
                log("control worker: %r" % e)
