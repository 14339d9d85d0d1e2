"""Opening paths for the executor so that a command cannot turn them against it.

A command controls every name under the writable roots: it can plant a symlink to
/proc/1/fd/1 (the protocol's stdout: a write there forges answers), to /proc/1/fd/0
(a read there steals requests, or blocks forever), a fifo (an open blocks), a
device, a socket, and swap any of them in between a check and an open. The
executor's threads do file work with the sandbox user's fsuid (privileges), which
keeps the kernel's permission checks the user's; but /proc/<executor>/ is open to
the executor itself whatever its fsuid, so the paths have to be kept out of /proc
here. Rules, for every file tool and for snapshots:

  - nothing is opened, listed or passed through under FORBIDDEN_ROOTS (/proc, /sys,
    /dev), nor through a magic link;
  - only regular files are opened for reading or writing: never a fifo, socket or
    device (a name is first opened O_PATH or checked with lstat, which opens
    nothing; the real open is O_NONBLOCK|O_NOCTTY and checked with fstat);
  - writes go only to files under WRITABLE_ROOTS (parents created there);
  - snapshot paths follow no symlink at all and stay beneath their root.

Two ways to resolve a path, the same rules: openat2(2) with RESOLVE_NO_MAGICLINKS
(and RESOLVE_BENEATH | RESOLVE_NO_XDEV from the root's fd for writes and snapshot
paths) where the kernel has it, and otherwise (gVisor, kernels before 5.6) a walk one
component at a time with O_NOFOLLOW from a directory fd, following ordinary symlinks
itself and tracking where it really is. The walk is also taken for a write that
openat2 refuses with EXDEV (an absolute symlink inside the roots). KEEL_EXECUTOR_RESOLVE=walk
in the executor's environment forces the walk (tests run both).
"""

import ctypes
import errno
import os
import stat

from .layout import FORBIDDEN_ROOTS, WRITABLE_ROOTS

O_PATH = getattr(os, "O_PATH", 0o10000000)
_RESOLVE_NO_XDEV = 0x01
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = 437  # the same number on every architecture
_AT_FDCWD = -100
MAX_SYMLINKS = 40
_DIR = os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class Refused(Exception):
    """A path a tool must not use. code is the protocol's error code (see tools.ToolError)."""

    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code
        self.message = message


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _openat2(dirfd, path, flags, mode, resolve):
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
    fd = _libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(os.fsencode(path)),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    return fd


def _probe_openat2():
    try:
        os.close(_openat2(_AT_FDCWD, "/", O_PATH | os.O_DIRECTORY, 0, _RESOLVE_NO_MAGICLINKS))
        return True
    except OSError:
        return False  # ENOSYS (gVisor, old kernels) or a seccomp profile that refuses it


def _choose():
    if os.environ.pop("KEEL_EXECUTOR_RESOLVE", None) == "walk":
        return "walk"
    return "openat2" if _probe_openat2() else "walk"


# "openat2" or "walk"; decided once, at import (the knob is removed so commands never see it).
RESOLVER = _choose()


def _forbidden(path):
    return any(path == r or path.startswith(r + "/") for r in FORBIDDEN_ROOTS)


def _root_of(path, roots):
    for r in roots:
        if path == r or path.startswith(r + "/"):
            return r
    return None


def _refuse_forbidden(path, shown):
    if _forbidden(path):
        raise Refused("Forbidden", "%s is under %s: the file tools never open /proc, /sys or /dev" % (
            shown, next(r for r in FORBIDDEN_ROOTS if path == r or path.startswith(r + "/"))))


def _kind(mode):
    for test, name in ((stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


def _check_regular(st, shown):
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", shown)
    if not stat.S_ISREG(st.st_mode):
        raise Refused("NotAFile", "%s is %s; the file tools read and write regular files only" % (shown, _kind(st.st_mode)))


def _fd_path(fd):
    """Where an open fd really is (our own /proc/self/fd; never a path a command gave us)."""
    return os.readlink("/proc/self/fd/%d" % fd)


def _same(a, b):
    return a.st_dev == b.st_dev and a.st_ino == b.st_ino


# --- the walk -----------------------------------------------------------

class _Walk:
    """A path resolved one component at a time: `stack` holds (name, fd) of the directories entered,
    from "/", each opened O_NOFOLLOW from the one before, so `where` is where we really are."""

    def __init__(self):
        self.stack = [("", os.open("/", O_PATH | _DIR))]

    def close(self):
        for _, fd in self.stack:
            os.close(fd)
        self.stack = []

    @property
    def fd(self):
        return self.stack[-1][1]

    @property
    def where(self):
        return "/".join(n for n, _ in self.stack) or "/"

    def reset(self):
        while len(self.stack) > 1:
            os.close(self.stack.pop()[1])

    def up(self):
        if len(self.stack) > 1:
            os.close(self.stack.pop()[1])

    def enter(self, name, shown):
        st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", shown)
        child = (self.where.rstrip("/") + "/" + name)
        _refuse_forbidden(child, shown)
        fd = os.open(name, O_PATH | _DIR, dir_fd=self.fd)  # a symlink swapped in since the stat: ELOOP
        if not _same(os.fstat(fd), st):
            os.close(fd)
            raise Refused("Changed", "%s changed while it was opened; try again" % shown)
        self.stack.append((name, fd))


def _walk(path, shown, follow_last, create_dirs_in=None):
    """Resolve absolute `path` with the walk. Returns (walk, last name) with walk positioned in the last
    component's directory; the last component (if any) is not opened, and is a symlink only when
    follow_last is false. Missing directories are created when create_dirs_in (roots) holds where we are."""
    w = _Walk()
    try:
        todo = [c for c in path.split("/") if c][::-1]  # a stack: next component last
        links = 0
        while todo:
            name = todo.pop()
            if name == ".":
                continue
            if name == "..":
                w.up()
                continue
            last = not todo
            try:
                st = os.stat(name, dir_fd=w.fd, follow_symlinks=False)
            except FileNotFoundError:
                if last:  # the caller decides: a read fails, a write creates it (where it may)
                    _refuse_forbidden(w.where.rstrip("/") + "/" + name, shown)
                    return w, name
                if create_dirs_in is None or _root_of(w.where, create_dirs_in) is None:
                    raise
                os.mkdir(name, 0o777, dir_fd=w.fd)
                w.enter(name, shown)
                continue
            if stat.S_ISLNK(st.st_mode) and (follow_last or not last):
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, "Too many levels of symbolic links", shown)
                target = os.readlink(name, dir_fd=w.fd)
                if target.startswith("/"):
                    w.reset()
                todo.extend([c for c in target.split("/") if c][::-1])
                continue
            if last:
                _refuse_forbidden(w.where.rstrip("/") + "/" + name, shown)
                return w, name
            w.enter(name, shown)
        return w, None  # the path was "/" or ended in ".."
    except BaseException:
        w.close()
        raise


# --- reads --------------------------------------------------------------

def open_read(path):
    """(fd, stat) of the regular file at absolute `path`, opened for reading. Ordinary symlinks are
    followed anywhere (the image's files can be read, as `cat` can); see the module docstring."""
    if RESOLVER == "openat2":
        _refuse_forbidden(path, path)
        pfd = _openat2(_AT_FDCWD, path, O_PATH, 0, _RESOLVE_NO_MAGICLINKS)
        try:
            st = os.fstat(pfd)
            real = _fd_path(pfd)
        finally:
            os.close(pfd)
        _refuse_forbidden(real, path)
        _check_regular(st, path)
        fd = _openat2(_AT_FDCWD, real, os.O_RDONLY | os.O_NOFOLLOW | _FILE, 0, _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    else:
        w, name = _walk(path, path, follow_last=True)
        try:
            if name is None:
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            st = os.stat(name, dir_fd=w.fd, follow_symlinks=False)
            _check_regular(st, path)
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | _FILE, dir_fd=w.fd)
        finally:
            w.close()
    return _checked(fd, st, path)


def _checked(fd, st, shown):
    try:
        now = os.fstat(fd)
        _check_regular(now, shown)
        if not _same(now, st):
            raise Refused("Changed", "%s changed while it was opened; try again" % shown)
        os.set_blocking(fd, True)
        return fd, now
    except BaseException:
        os.close(fd)
        raise


def open_dir(path):
    """An fd (O_RDONLY) of the directory at absolute `path`, for listing; symlinks followed as by open_read."""
    if RESOLVER == "openat2":
        _refuse_forbidden(path, path)
        fd = _openat2(_AT_FDCWD, path, os.O_RDONLY | os.O_DIRECTORY | _FILE, 0, _RESOLVE_NO_MAGICLINKS)
        try:
            _refuse_forbidden(_fd_path(fd), path)
        except BaseException:
            os.close(fd)
            raise
        return fd
    w, name = _walk(path, path, follow_last=True)
    try:
        if name is None:
            return os.open(".", os.O_RDONLY | _DIR, dir_fd=w.fd) if len(w.stack) > 1 else os.open("/", os.O_RDONLY | _DIR)
        st = os.stat(name, dir_fd=w.fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        fd = os.open(name, os.O_RDONLY | _DIR | os.O_NONBLOCK, dir_fd=w.fd)
        if not _same(os.fstat(fd), st):
            os.close(fd)
            raise Refused("Changed", "%s changed while it was opened; try again" % path)
        return fd
    finally:
        w.close()


def open_child_dir(dirfd, name):
    """A subdirectory `name` of an open directory, never through a symlink (recursive listings)."""
    return os.open(name, os.O_RDONLY | _DIR | os.O_NONBLOCK, dir_fd=dirfd)


# --- writes -------------------------------------------------------------

_root_fds = {}


def _root_fd(root):
    fd = _root_fds.get(root)
    if fd is None:
        fd = _root_fds[root] = os.open(root, O_PATH | _DIR)
    return fd


def _refuse_outside(path):
    root = _root_of(path, WRITABLE_ROOTS)
    if root is None:
        raise Refused("Forbidden", "%s is outside the writable folders (%s); the file tools write only there" % (
            path, ", ".join(WRITABLE_ROOTS)))
    return root


def open_write(path, mode=0o666):
    """(fd, stat) of the regular file at absolute `path` under WRITABLE_ROOTS, opened for writing (not
    truncated) and created with `mode` (less the umask) if missing, parents too. Refused: anything
    that is not a regular file, and anything that resolves outside the writable roots."""
    root = _refuse_outside(path)
    if RESOLVER == "openat2":
        try:
            return _open_write_openat2(root, path, mode)
        except OSError as e:
            if e.errno != errno.EXDEV:  # EXDEV: an absolute symlink, or one leading out: the walk decides
                raise
    return _open_write_walk(path, mode)


_BENEATH = _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS | _RESOLVE_NO_XDEV


def _open_write_openat2(root, path, mode):
    rel = path[len(root) + 1:]
    if not rel:
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    rfd = _root_fd(root)
    flags = os.O_WRONLY | os.O_CREAT | _FILE
    try:
        fd = _openat2(rfd, rel, flags, mode, _BENEATH)
    except FileNotFoundError:
        _mkdirs_beneath(rfd, rel.split("/")[:-1], path)
        fd = _openat2(rfd, rel, flags, mode, _BENEATH)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a fifo without a reader, or a socket
            st = _openat2_stat(rfd, rel)
            _check_regular(st, path)
        raise
    return _checked(fd, os.fstat(fd), path)


def _openat2_stat(rfd, rel):
    pfd = _openat2(rfd, rel, O_PATH, 0, _BENEATH)
    try:
        return os.fstat(pfd)
    finally:
        os.close(pfd)


def _mkdirs_beneath(rfd, parts, shown):
    for i in range(len(parts)):
        try:
            os.close(_openat2(rfd, "/".join(parts[:i + 1]), O_PATH | os.O_DIRECTORY, 0, _BENEATH))
            continue
        except FileNotFoundError:
            pass
        parent = "/".join(parts[:i]) or "."
        pfd = _openat2(rfd, parent, O_PATH | os.O_DIRECTORY, 0, _BENEATH)
        try:
            os.mkdir(parts[i], 0o777, dir_fd=pfd)
        except FileExistsError:
            pass
        finally:
            os.close(pfd)


def _open_write_walk(path, mode):
    w, name = _walk(path, path, follow_last=True, create_dirs_in=WRITABLE_ROOTS)
    try:
        if name is None:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        where = w.where
        root = _root_of(where, WRITABLE_ROOTS)
        if root is None or os.fstat(w.fd).st_dev != os.stat(root).st_dev:
            raise Refused("Forbidden", "%s leads to %s/%s, outside the writable folders (%s)" % (
                path, where.rstrip("/"), name, ", ".join(WRITABLE_ROOTS)))
        try:
            st = os.stat(name, dir_fd=w.fd, follow_symlinks=False)
        except FileNotFoundError:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _FILE, mode, dir_fd=w.fd)
            return _checked(fd, os.fstat(fd), path)
        _check_regular(st, path)
        fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | _FILE, dir_fd=w.fd)
        return _checked(fd, st, path)
    finally:
        w.close()


# --- beneath a root, no symlinks (snapshots, shell state) ---------------------

def _split_beneath(path, roots):
    root = _root_of(path, roots)
    if root is None or os.path.normpath(path) != path:
        raise Refused("InvalidArguments", "%r is not a path under %s" % (path, ", ".join(roots)))
    return root, path[len(root) + 1:]


def open_beneath(path, flags, roots, mode=0o600):
    """Open `path`, which must lie under one of `roots`, following no symlink in any component and
    never leaving the root's mount. flags get O_NOFOLLOW|O_NONBLOCK|O_NOCTTY|O_CLOEXEC."""
    root, rel = _split_beneath(path, roots)
    flags |= os.O_NOFOLLOW | _FILE
    if not rel:
        return os.open(root, flags | os.O_DIRECTORY)
    if RESOLVER == "openat2":
        return _openat2(_root_fd(root), rel, flags, mode, _BENEATH | _RESOLVE_NO_SYMLINKS)
    dfd, name = _parent_walk(root, rel)
    try:
        return os.open(name, flags, mode, dir_fd=dfd)
    finally:
        os.close(dfd)


def parent_beneath(path, roots):
    """(fd of the parent directory, last name) of `path` under one of `roots`, no symlink followed.
    The caller closes the fd and uses the name with dir_fd= calls that do not follow it either."""
    root, rel = _split_beneath(path, roots)
    if not rel:
        raise Refused("InvalidArguments", "%s is a root" % path)
    head, _, name = rel.rpartition("/")
    if RESOLVER == "openat2":
        if not head:
            return os.open(root, O_PATH | _DIR), name
        return _openat2(_root_fd(root), head, O_PATH | os.O_DIRECTORY, 0, _BENEATH | _RESOLVE_NO_SYMLINKS), name
    return _parent_walk(root, rel)


def _parent_walk(root, rel):
    parts = rel.split("/")
    fd = os.open(root, O_PATH | _DIR)
    try:
        for part in parts[:-1]:
            nfd = os.open(part, O_PATH | _DIR, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd, parts[-1]
