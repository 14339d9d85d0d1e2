"""inotify for the snapshot walk: which directories changed since the last snapshot.

One inotify instance, one watch per directory under SNAPSHOT_ROOTS. A watch is added
through the directory's own open fd (/proc/self/fd/N, which this process may always
resolve), never by a path a command could swap. The kernel queues an event for every
change to a directory's entries (create, delete, rename in and out) and to its
children's contents and attributes (write, truncate, chmod, touch) synchronously, in
the syscall that makes the change; so draining the queue at the start of a snapshot
sees every change a command has made by then, including changes by background
processes, and a change made after the drain stays queued for the next snapshot.

What inotify does not say, and what snapshots.py does about it:
  - a queue overflow (IN_Q_OVERFLOW: events were dropped) -> a full walk;
  - writes through a shared writable mapping (mmap) -> files mapped so by any process
    (/proc/<pid>/maps) are stat'ed on every snapshot;
  - a write through a hard link in another directory reports only that directory ->
    files with more than one link are stat'ed on every snapshot;
  - directories it could not watch (max_user_watches, permissions) or open -> a full walk
    while any such directory exists (no inotify instance at all, or out of watches: always);
  - a directory whose mode changed, or that was created, moved or replaced -> that subtree
    is listed anew (and its watches added or re-pointed at its new path);
  - a new hard link -> one full walk (the other name's directory had no event);
  - a restore, or the first snapshot of an executor -> a full walk.

KEEL_SNAPSHOT_WATCH=0 in the executor's environment turns watching off (every snapshot walks).
Watches are charged to the executor's uid (root) across the whole host, fs.inotify.max_user_watches
for all sandboxes together: one sandbox takes at most MAX_WATCHES of them, so a command that makes
hundreds of thousands of directories cannot starve the others; past it, that sandbox walks.
"""

import ctypes
import errno
import os
import struct

# At most this many watched directories per sandbox (see above).
MAX_WATCHES = 32768

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

# What a directory's watch reports: every change to its entries and to its children.
MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
        | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)
# Events on a child directory's name that change what the directory at that name is.
STRUCTURAL = IN_CREATE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE

_HEADER = struct.Struct("iIII")
_READ = 1 << 16

_libc = ctypes.CDLL(None, use_errno=True)


class WatchError(Exception):
    def __init__(self, err, message):
        Exception.__init__(self, message)
        self.errno = err


class Watcher:
    """One inotify instance and the directory path each of its watches stands for."""

    def __init__(self):
        fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise WatchError(err, "inotify_init1: %s" % os.strerror(err))
        self.fd = fd
        self.paths = {}  # wd -> directory path
        self.wds = {}  # directory path -> wd

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def add(self, dfd, path):
        """Watch the directory open as `dfd`, known as `path`. Raises WatchError (errno ENOSPC: out of watches,
        the host's or this sandbox's share of them, MAX_WATCHES)."""
        if len(self.paths) >= MAX_WATCHES and path not in self.wds:
            raise WatchError(errno.ENOSPC, "inotify_add_watch %s: this sandbox's %d watches are used" % (path, MAX_WATCHES))
        wd = _libc.inotify_add_watch(self.fd, ("/proc/self/fd/%d" % dfd).encode(), MASK)
        if wd < 0:
            err = ctypes.get_errno()
            raise WatchError(err, "inotify_add_watch %s: %s" % (path, os.strerror(err)))
        old = self.paths.get(wd)
        if old is not None and old != path and self.wds.get(old) == wd:
            del self.wds[old]  # the same directory, moved
        prev = self.wds.get(path)
        if prev is not None and prev != wd:
            # Another directory stood at this path before: stop listening to it.
            self.paths.pop(prev, None)
            _libc.inotify_rm_watch(self.fd, prev)
        self.paths[wd] = path
        self.wds[path] = wd
        return wd

    def path(self, wd):
        return self.paths.get(wd)

    def forget(self, wd):
        path = self.paths.pop(wd, None)
        if path is not None and self.wds.get(path) == wd:
            del self.wds[path]

    def drain(self):
        """Every queued event as (wd, mask, name); name is '' for an event on the watched directory itself."""
        out = []
        while True:
            try:
                buf = os.read(self.fd, _READ)
            except BlockingIOError:
                return out
            except InterruptedError:
                continue
            if not buf:
                return out
            i, n = 0, len(buf)
            unpack = _HEADER.unpack_from
            size = _HEADER.size
            while i < n:
                wd, mask, _cookie, ln = unpack(buf, i)
                i += size
                name = buf[i:i + ln].rstrip(b"\0").decode("utf-8", "surrogateescape") if ln else ""
                i += ln
                out.append((wd, mask, name))


def shared_writable_maps(roots):
    """Paths under `roots` that some process maps shared and writable (its writes make no inotify event)."""
    found = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    me = str(os.getpid())
    for pid in pids:
        if pid == me:
            continue
        try:
            with open("/proc/%s/maps" % pid, "rb") as f:
                data = f.read()
        except OSError:
            continue
        for line in data.split(b"\n"):
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[1][:2] == b"rw" and parts[1][3:4] == b"s":
                p = parts[5].decode("utf-8", "surrogateescape")
                if p.endswith(" (deleted)"):
                    continue
                if any(p.startswith(r + "/") for r in roots):
                    found.add(p)
    return found


def enabled():
    return os.environ.get("KEEL_SNAPSHOT_WATCH", "1") != "0"


__all__ = ["Watcher", "WatchError", "shared_writable_maps", "enabled", "errno"]
