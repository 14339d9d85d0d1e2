"""PID 1's duties: reaping orphans, and stopping every process of the sandbox user.

The executor is the container's PID 1, so every orphaned process (a command's
background job whose parent exited) becomes its child, and stays a zombie until
it is waited for. The shells the executor starts are waited for by the request
that started them (shell.Shell registers them in CHILDREN under SPAWN_LOCK);
everything else is collected by reap_orphans, every second and whenever
processes were killed.

A command can leave processes behind however it likes (setsid, double fork,
nohup), so a process group says nothing about what a command started. When a
call times out or is cancelled, or no process can be started (the pids limit is
full, e.g. a fork bomb), kill_sandbox_user stops every process of the sandbox
user: kill(-1, SIGKILL) as that user (privileges.signal_sandbox_user), repeated
until /proc shows none of them alive, zombies reaped.
"""

import os
import resource
import signal
import threading
import time

from . import privileges
from .layout import SANDBOX_UID

# Held while a shell is spawned and registered, while orphans are reaped, and while the sandbox
# user's processes are killed: the reaper never waits for a shell its caller will wait for, and
# no command starts half-way through a kill.
SPAWN_LOCK = threading.Lock()
CHILDREN = set()
KILL_TIMEOUT_SEC = 10.0
# A command is started only with at least this many pids free (a command needs a few of its own);
# with fewer, every process of the sandbox user is stopped first (see pids_nearly_full).
PIDS_HEADROOM = 16
# The container's pids cgroup as it sees it: cgroup v1, then v2.
_PIDS_FILES = (("/sys/fs/cgroup/pids/pids.current", "/sys/fs/cgroup/pids/pids.max"),
               ("/sys/fs/cgroup/pids.current", "/sys/fs/cgroup/pids.max"))
_UID_PREFIX = b"\nUid:\t%d\t" % SANDBOX_UID
# RLIMIT_NPROC of every command, when the host asked for one (--nproc, under gVisor); None otherwise.
NPROC_LIMIT = None


def limit_processes(limit, log):
    """Set RLIMIT_NPROC (soft and hard) to `limit` for this process and so for every command it starts.

    Under gVisor the container's pids cgroup is on the host and holds gVisor's own threads, and the sandbox
    has none of its own: a fork bomb grew until that host cgroup was full, gVisor's kernel died, and the
    container was lost. gVisor enforces RLIMIT_NPROC per uid, so the sandbox user can run at most `limit`
    tasks (threads count), and cannot raise it (no CAP_SYS_RESOURCE). pids_nearly_full then counts them.
    Not used under runc: there RLIMIT_NPROC would count the uid's processes of the whole host."""
    global NPROC_LIMIT
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
        NPROC_LIMIT = limit
    except (OSError, ValueError) as e:
        log("cannot set RLIMIT_NPROC to %d: %s; a fork bomb may fill the host's pids limit" % (limit, e))


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


def _sandbox_tasks():
    """How many tasks (threads) the sandbox user runs: what RLIMIT_NPROC counts."""
    tasks = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/status" % name, "rb") as f:
                status = f.read()
        except OSError:
            continue
        if _UID_PREFIX in status:
            at = status.find(b"\nThreads:\t")
            tasks += int(status[at + 10:status.index(b"\n", at + 1)]) if at >= 0 else 1
    return tasks


def _is_sandbox_user(pid):
    """Whether the real uid of `pid` is the sandbox user's (from /proc/<pid>/status, which a command
    cannot hide: it is readable even when the process made itself non-dumpable)."""
    try:
        with open("/proc/%d/status" % pid, "rb") as f:
            return _UID_PREFIX in f.read()
    except OSError:
        return False


def _reap_locked(pgrp=None):
    alive = 0
    for pid, state, ppid, group in _processes():
        if pgrp is not None and group != pgrp:
            continue
        if state == b"Z" and ppid == 1 and pid not in CHILDREN:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        elif state not in (b"Z", b"X"):
            alive += 1
    return alive


def reap_orphans(pgrp=None):
    """Collect exited orphans (of process group `pgrp` only, when given). Returns how many
    processes of that group are still alive. A no-op unless we are PID 1."""
    if os.getpid() != 1:
        return 0
    with SPAWN_LOCK:
        return _reap_locked(pgrp)


def reap_group(pgrp, timeout=1.0):
    """After SIGKILL to a process group: wait until none of it is left, zombies included,
    so a caller told "killed" can rely on it."""
    deadline = time.monotonic() + timeout
    while reap_orphans(pgrp) and time.monotonic() < deadline:
        time.sleep(0.005)
    reap_orphans(pgrp)


def _sandbox_processes():
    """{pid: pgrp} of the sandbox user's processes that are not yet dead."""
    return {pid: group for pid, state, _, group in _processes()
            if state not in (b"Z", b"X") and pid != 1 and _is_sandbox_user(pid)}


def kill_sandbox_user(timeout=KILL_TIMEOUT_SEC):
    """SIGKILL every process of the sandbox user until none is left. Returns ({pid: pgrp} of those that
    were alive when it began or appeared while it ran, how many were still alive when it gave up),
    or None where it cannot be done (not PID 1: the caller kills its process group instead)."""
    if not privileges.can_signal_all():
        return None
    seen = {}
    deadline = time.monotonic() + timeout
    with SPAWN_LOCK:
        while True:
            alive = _sandbox_processes()
            seen.update(alive)
            if not alive:
                _reap_locked()
                return seen, 0
            if time.monotonic() > deadline:
                return seen, len(alive)
            privileges.signal_sandbox_user(signal.SIGKILL)
            time.sleep(0.001)  # a killed process needs a moment to exit
            _reap_locked()


def pids_nearly_full():
    """(in use, limit) when fewer than PIDS_HEADROOM pids are free in the container's pids cgroup (under
    gVisor: of the commands' RLIMIT_NPROC, see limit_processes), else None (also when neither can be read or
    there is no limit). A fork bomb keeps the limit full while
    its processes churn, so a spawn may still succeed now and then; the command would then fail inside."""
    for current_path, max_path in _PIDS_FILES:
        try:
            with open(current_path) as f:
                current = int(f.read())
            with open(max_path) as f:
                limit = f.read().strip()
        except (OSError, ValueError):
            continue
        if limit == "max":
            break
        return (current, int(limit)) if int(limit) - current < PIDS_HEADROOM else None
    if NPROC_LIMIT is not None:  # gVisor: no pids cgroup here, the limit is the commands' RLIMIT_NPROC
        current = _sandbox_tasks()
        return (current, NPROC_LIMIT) if NPROC_LIMIT - current < PIDS_HEADROOM else None
    return None


def reap_forever():
    """The orphan reaper's thread (started only when we are PID 1)."""
    privileges.use_sandbox_fs()
    while True:
        time.sleep(1.0)
        reap_orphans()
