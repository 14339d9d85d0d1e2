"""MCP servers inside the sandbox: stdio processes the session names (SessionSpec.mcpSandbox).

The executor starts each server as the sandbox user (uid 1000, like every command),
in /workspace, with the container's basic environment plus the server's own `env`,
and holds it for the life of the container. One op, `mcp`, carries MCP JSON-RPC
messages between the host (which runs the official MCP client: host side is
activities/sandbox/mcp.ts) and the server's stdin/stdout:

    {"op": "mcp", "args": {"server": {"name", "command", "args", "env"},
                           "init": <the client's initialize params>,
                           "messages": [<JSON-RPC message>, ...],
                           "wait": [<request id>, ...],
                           "timeoutSec": n, "startTimeoutSec": n}}

answers {"initialize": <the server's initialize result>, "started": bool,
"messages": [<what the server sent while we waited>, ...]}. The handshake
(initialize, then notifications/initialized) is the executor's: a server is
started, and started again, without the host, with the `init` params the host
last sent. So a server that is gone (it exited, crashed, was stopped by a
timeout, or was killed with every other process of the sandbox user when a
command timed out: reaping.kill_sandbox_user) is started again on the next op;
a restored container (a new one) starts it on first use.

Failures are ToolErrors, which the host turns into error results for the model:
McpUnavailable (did not start or answer initialize), Timeout (no answer in
timeoutSec: the server is stopped, and starts again next time), McpError (it
exited during the call; its stderr's tail is quoted). Requests the server sends
us (sampling, roots) are answered "method not found": the executor offers no
client capabilities. Lines that are not JSON are dropped (and counted).

The server runs as the commands' uid: it can do what a command can, and a
command can do anything to it (read its memory, kill it). It is trusted only as
far as the sandbox is.
"""

import json
import os
import signal
import subprocess
import threading
import time

from . import privileges
from .layout import WORKSPACE
from .reaping import CHILDREN, SPAWN_LOCK
from .tools import ToolError

STDERR_TAIL = 2000
MAX_SERVERS = 16
MAX_LINE_BYTES = 32 * 1024 * 1024
DEFAULT_TIMEOUT_SEC = 60
DEFAULT_START_TIMEOUT_SEC = 30


def _check_spec(spec):
    if not isinstance(spec, dict):
        raise ToolError("InvalidArguments", "server must be an object")
    name, command = spec.get("name"), spec.get("command")
    if not isinstance(name, str) or not name:
        raise ToolError("InvalidArguments", "server.name must be a non-empty string")
    if not isinstance(command, str) or not command:
        raise ToolError("InvalidArguments", "server.command must be a non-empty string")
    args = spec.get("args") or []
    env = spec.get("env") or {}
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ToolError("InvalidArguments", "server.args must be an array of strings")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ToolError("InvalidArguments", "server.env must be an object of strings")
    return name, [command] + args, env


class _Server:
    """One running server process, its reader threads and what it has said."""

    def __init__(self, name, argv, env):
        self.name = name
        self.argv = argv
        self.env = env
        self.cond = threading.Condition()
        self.responses = {}  # request id (as JSON text) -> message
        self.extra = []  # notifications the server sent
        self.stderr = ""
        self.malformed = 0
        self.eof = False
        self.init_result = None
        self.proc = None
        self.write_lock = threading.Lock()

    def start(self):
        base = dict(os.environ)
        base.update(self.env)
        cwd = WORKSPACE if os.path.isdir(WORKSPACE) else "/"
        try:
            with SPAWN_LOCK:  # registered before the orphan reaper can see it exit
                self.proc = subprocess.Popen(
                    self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    cwd=cwd, env=base, start_new_session=True, **privileges.spawn_user_args())
                CHILDREN.add(self.proc.pid)
        except OSError as e:
            raise ToolError("McpUnavailable", "MCP server \"%s\" did not start (%s): %s" % (
                self.name, self.argv[0], e.strerror or e))
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def alive(self):
        return self.proc is not None and not self.eof and self.proc.poll() is None

    def _read_stdout(self):
        privileges.use_sandbox_fs()
        out = self.proc.stdout
        while True:
            line = out.readline(MAX_LINE_BYTES)
            if not line:
                break
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
                if not isinstance(msg, dict):
                    raise ValueError("not an object")
            except ValueError:
                with self.cond:
                    self.malformed += 1
                continue
            if "method" in msg and "id" in msg:
                # A request to us (sampling, roots, elicitation): we offer no client capabilities.
                self.write({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "not supported by Keel"}})
                continue
            with self.cond:
                if "id" in msg and "method" not in msg:
                    self.responses[json.dumps(msg["id"])] = msg
                else:
                    self.extra.append(msg)
                    del self.extra[:-100]
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def _read_stderr(self):
        privileges.use_sandbox_fs()
        err = self.proc.stderr
        while True:
            chunk = err.read1(4096) if hasattr(err, "read1") else err.read(4096)
            if not chunk:
                return
            with self.cond:
                self.stderr = (self.stderr + chunk.decode("utf-8", "replace"))[-STDERR_TAIL:]

    def stderr_tail(self):
        with self.cond:
            return self.stderr.strip()[-500:]

    def write(self, msg):
        data = (json.dumps(msg, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")
        try:
            with self.write_lock:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            return True
        except (OSError, ValueError):
            return False

    def wait_for(self, ids, deadline):
        """The responses to `ids`, or 'eof' / 'timeout'."""
        keys = [json.dumps(i) for i in ids]
        with self.cond:
            while True:
                if all(k in self.responses for k in keys):
                    return [self.responses.pop(k) for k in keys]
                if self.eof:
                    return "eof"
                left = deadline - time.monotonic()
                if left <= 0:
                    return "timeout"
                self.cond.wait(min(left, 1.0))

    def take_extra(self):
        with self.cond:
            extra, self.extra = self.extra, []
            return extra

    def stop(self):
        """Kill the server's process group and wait for it. The reader threads close its pipes when they end
        (closing a pipe another thread is reading would wait for that read)."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        _kill_group(self.proc.pid)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with SPAWN_LOCK:
            CHILDREN.discard(self.proc.pid)

    def exit_note(self):
        code = self.proc.poll() if self.proc is not None else None
        if code is None:
            return "its output ended"
        return "exit code %d" % code if code >= 0 else "killed by signal %d" % -code


def _kill_group(pgid):
    """SIGKILL process group `pgid` (a server's: start_new_session), as the sandbox user (see privileges)."""

    def kill():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass

    try:
        privileges.as_sandbox_user_signals(kill)
    except OSError:
        pass  # no way to signal here: the server is left to the next timeout's kill of every process


class McpServers:
    def __init__(self):
        self.lock = threading.Lock()
        self.servers = {}  # name -> _Server
        self.locks = {}  # name -> lock held for one exchange at a time

    def _server_lock(self, name):
        with self.lock:
            if name not in self.locks:
                if len(self.locks) >= MAX_SERVERS:
                    raise ToolError("InvalidArguments", "at most %d MCP servers per sandbox" % MAX_SERVERS)
                self.locks[name] = threading.Lock()
            return self.locks[name]

    def _ensure(self, name, argv, env, init, start_timeout):
        """The running server `name` (started, with the handshake, if it is not). Returns (server, started)."""
        srv = self.servers.get(name)
        if srv is not None and srv.alive() and srv.argv == argv and srv.env == env:
            return srv, False
        if srv is not None:
            srv.stop()
            self.servers.pop(name, None)
        srv = _Server(name, argv, env)
        srv.start()
        ok = srv.write({"jsonrpc": "2.0", "id": "keel-init", "method": "initialize", "params": init})
        got = srv.wait_for(["keel-init"], time.monotonic() + start_timeout) if ok else "eof"
        if not isinstance(got, list):
            srv.stop()
            what = "exited (%s)" % srv.exit_note() if got == "eof" else "did not answer initialize within %g s" % start_timeout
            tail = srv.stderr_tail()
            raise ToolError("McpUnavailable", "MCP server \"%s\" did not start (%s): it %s%s" % (
                name, argv[0], what, "; its stderr: %s" % tail if tail else ""))
        answer = got[0]
        if not isinstance(answer.get("result"), dict):
            srv.stop()
            raise ToolError("McpUnavailable", "MCP server \"%s\" refused initialize: %s" % (
                name, json.dumps(answer.get("error"))[:500]))
        srv.init_result = answer["result"]
        srv.write({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.servers[name] = srv
        return srv, True

    def op_mcp(self, rid, args):
        name, argv, env = _check_spec(args.get("server"))
        init = args.get("init")
        if not isinstance(init, dict):
            raise ToolError("InvalidArguments", "init must be the client's initialize params")
        messages = args.get("messages") or []
        wait = args.get("wait") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages) or not isinstance(wait, list):
            raise ToolError("InvalidArguments", "messages must be an array of JSON-RPC messages, wait an array of ids")
        timeout = float(args.get("timeoutSec") or DEFAULT_TIMEOUT_SEC)
        start_timeout = float(args.get("startTimeoutSec") or DEFAULT_START_TIMEOUT_SEC)
        with self._server_lock(name):
            srv, started = self._ensure(name, argv, env, init, start_timeout)
            srv.take_extra()  # what it said between ops is nobody's answer
            # A server that stops reading its stdin blocks a write once the pipe is full: killing it by the
            # deadline ends that write (EPIPE). Only the kill here; stop() closes stdin, which would wait for it.
            stuck = []
            killer = threading.Timer(timeout, lambda: (stuck.append(True), _kill_group(srv.proc.pid)))
            killer.daemon = True
            killer.start()
            try:
                for m in messages:
                    if not srv.write(m):
                        break
            finally:
                killer.cancel()
            got = "timeout" if stuck else srv.wait_for(wait, time.monotonic() + timeout) if wait else []
            if got == "timeout":
                srv.stop()
                self.servers.pop(name, None)
                raise ToolError("Timeout", "MCP server \"%s\" did not answer within %g s; it was stopped and starts again "
                                "on the next call" % (name, timeout))
            if got == "eof":
                srv.stop()  # waits for it, so its exit code is known
                tail = srv.stderr_tail()
                note = srv.exit_note()
                self.servers.pop(name, None)
                raise ToolError("McpError", "MCP server \"%s\" exited during the call (%s); it starts again on the next "
                                "call%s" % (name, note, ". Its stderr: %s" % tail if tail else ""))
            result = {"initialize": srv.init_result, "started": started, "messages": srv.take_extra() + got}
            if srv.malformed:
                result["malformedLines"] = srv.malformed
                srv.malformed = 0
            return result
