"""PID 1's duty: reaping orphans.

The executor is the container's PID 1, so every orphaned process (a command's
background job whose parent exited) becomes its child, and stays a zombie until
it is waited for. The shells the executor starts are waited for by the request
that started them (shell.Shell.op_shell registers them in CHILDREN under
SPAWN_LOCK); everything else is collected by reap_orphans, every second and
after a process group is killed.
"""

import os
import threading
import time

# Held while a shell is spawned and registered, and while orphans are reaped, so the
# reaper never waits for a shell its caller will wait for.
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


def reap_forever():
    """The orphan reaper's thread (started only when we are PID 1)."""
    while True:
        time.sleep(1.0)
        reap_orphans()
