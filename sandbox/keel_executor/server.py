"""The JSON-lines server: requests in, exactly one answer each, idempotency keys.

Protocol: JSON lines. A request on stdin is
    {"id": "<request id>", "op": "<op>", "args": {...}, "key": "<idempotency key>"}
and every request gets exactly one line on stdout:
    {"id": ..., "ok": true, "result": {...}}  or
    {"id": ..., "ok": false, "error": {"code": "...", "message": "..."}}
Diagnostics go to stderr only. Requests run concurrently, one thread each
(ping inline); a shell request waits on its output pipe and the child's pidfd
in that one thread. The ops themselves live in the other modules; this one
only knows them as a table (op name -> handler(rid, args), see __main__), and
turns a ToolError into the error answer.

Idempotency: a request whose key has already completed gets the recorded
response again (under its own id) without running; one whose key is still
running waits for it. Keys are kept in memory (the last MAX_KEYS) and appended
to JOURNAL_PATH.

Stdin EOF: Docker keeps a container's stdin open across attaches when the
container was created with OpenStdin=true and StdinOnce=false, so a client
that detaches or dies does not end it. If stdin does end anyway, the executor
keeps running (it is the container's main process) and finishes what it has.
"""

import collections
import json
import os
import queue
import sys
import threading
import time

from .layout import STATE_DIR
from .tools import ToolError

JOURNAL_PATH = os.path.join(STATE_DIR, "journal")
JOURNAL_MAX_BYTES = 1024 * 1024
MAX_KEYS = 1000

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


class Server:
    def __init__(self, ops):
        # op name -> handler(rid, args), returning the result or raising ToolError
        self.ops = ops
        self.lock = threading.Lock()
        # key -> {"done": Event, "response": dict or None}
        self.keys = collections.OrderedDict()
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
        handler = self.ops.get(op) if isinstance(op, str) else None
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
