"""The privilege split: the executor is root with two capabilities, commands are uid 1000 with none.

The container starts the executor as root with CapDrop ALL and CapAdd SETUID, SETGID,
SETPCAP, under no-new-privileges (host/lockdown.ts). lock_down(), first thing in main
and before any other thread exists (capabilities, the bounding set and the file
identity are per thread), then:

  - drops every supplementary group, so root's group 0 never counts in a file check;
  - empties the capability bounding set (what CAP_SETPCAP is for), so no process
    started from here can ever gain a capability, then drops CAP_SETPCAP itself;
  - keeps exactly CAP_SETUID and CAP_SETGID, permitted and effective; inheritable
    and ambient empty;
  - makes itself non-dumpable, so /proc/<pid>/{mem,environ,fd,...} stay root's and
    ptrace is refused even where a uid check alone would not refuse it.

Why those two: commands are started as 1000:1000 without groups (spawn_user_args),
which takes CAP_SETUID and CAP_SETGID in the child between fork and exec; and every
executor thread does its file work with setfsuid/setfsgid 1000 (use_sandbox_fs),
which takes them too. Commands run as uid 1000 in all three uids, so the kernel
clears their permitted and effective sets at the setuid, and the empty bounding set
and no-new-privileges keep them empty across exec.

Signals: a command (uid 1000 in every uid) may signal only processes whose real or
saved uid is 1000; the executor's are 0, so `kill -9 1`, `kill -TERM -1`, tgkill on
any executor thread all fail with EPERM. The executor in turn stops the sandbox
user's processes without CAP_KILL (signal_sandbox_user): one thread sets only its
effective uid to 1000 (real and saved stay 0, so commands still cannot signal it)
and calls kill(-1, sig), which the kernel delivers, in one pass that a fork cannot
slip through, to every process whose real or saved uid is 1000, and to nothing else.

gVisor (runsc) has no setfsuid and no /proc/sys/kernel/cap_last_cap. There the file identity is
the thread's effective uid and gid instead (FS_MODE "euid"): each thread sets only its own
effective ids to 1000 with the raw setresgid/setresuid syscalls, real and saved stay 0, so
commands still cannot signal, trace or read it, and it goes back to 0 for its own state as
above. Commands are then started from an effective uid of 1000, which may become 1000 in
every uid without a capability; the groups are already empty (lock_down dropped them for the
whole process). The bounding set is emptied up to the first capability the kernel does not know.

Without root (an old lockdown, or run outside a container) there is no split: the
executor says so once and everything still works as the one user it is.
"""

import ctypes
import errno
import os
import platform
import threading

from .layout import SANDBOX_GID, SANDBOX_UID

CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
KEPT_CAPS = (CAP_SETGID, CAP_SETUID)

_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522
# setresuid for the calling thread only: glibc's wrapper changes every thread of the process.
_SYS_SETRESUID = {"x86_64": 117, "aarch64": 147, "arm64": 147, "riscv64": 147, "ppc64le": 164, "s390x": 208}
_SYS_SETRESGID = {"x86_64": 119, "aarch64": 149, "arm64": 149, "riscv64": 149, "ppc64le": 169, "s390x": 210}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.setfsuid.restype = ctypes.c_int
_libc.setfsgid.restype = ctypes.c_int

# True once lock_down() made the split: we are root holding KEPT_CAPS, commands are SANDBOX_UID.
SPLIT = False
# How a thread does its file work as the sandbox user: "fsuid" (setfsuid), or "euid" where the kernel has
# no setfsuid (gVisor): the thread's own effective uid and gid. Decided once, in lock_down().
FS_MODE = "fsuid"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _errno_fail(what):
    e = ctypes.get_errno()
    raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _prctl(option, arg2=0, arg3=0, what="prctl"):
    if _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        _errno_fail(what)


def _last_cap():
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


def _set_caps(caps):
    """Permitted = effective = caps, inheritable empty, for the calling thread (and the threads it starts)."""
    mask = 0
    for c in caps:
        mask |= 1 << c
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = mask & 0xFFFFFFFF
    data[1].effective = data[1].permitted = mask >> 32
    if _libc.capset(ctypes.byref(header), ctypes.byref(data)) != 0:
        _errno_fail("capset")


def not_dumpable(log):
    try:
        _prctl(_PR_SET_DUMPABLE, 0, what="prctl(PR_SET_DUMPABLE)")
    except OSError as e:  # an executor without this is weaker, not broken
        log("cannot make the executor non-dumpable: %s" % e)


def lock_down(log):
    """Make the split described above; call before any other thread starts. Returns whether it was made."""
    global SPLIT
    not_dumpable(log)
    if os.geteuid() != 0:
        log("running as uid %d, not root: commands and the executor share one uid (no privilege split)" % os.geteuid())
        return False
    os.setgroups([])
    os.setgid(0)
    try:
        for cap in range(_last_cap() + 1):
            try:
                _prctl(_PR_CAPBSET_DROP, cap, what="prctl(PR_CAPBSET_DROP, %d)" % cap)
            except OSError as e:
                if e.errno == errno.EINVAL and cap > CAP_SETPCAP:
                    break  # a capability this kernel does not know (gVisor has no cap_last_cap): none above it either
                raise
    except OSError as e:
        log("cannot empty the capability bounding set (is CAP_SETPCAP granted?): %s" % e)
    try:
        _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, what="prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    except OSError as e:
        log("cannot clear ambient capabilities: %s" % e)
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, what="prctl(PR_SET_NO_NEW_PRIVS)")
    _set_caps(KEPT_CAPS)
    # Changing credentials resets the dumpable flag to fs.suid_dumpable: say it again.
    not_dumpable(log)
    SPLIT = True
    _choose_fs_mode(log)
    use_sandbox_fs()
    return True


def _choose_fs_mode(log):
    global FS_MODE
    if _libc.setfsuid(-1) >= 0:
        return
    if platform.machine() not in _SYS_SETRESGID:
        raise OSError("no setfsuid here and no known setresuid syscall for %s" % platform.machine())
    FS_MODE = "euid"
    log("no setfsuid (gVisor?): file work is done with each thread's effective uid %d instead" % SANDBOX_UID)


def _thread_ids(nr_table, value, what):
    """setres[ug]id(-1, value, -1) for the calling thread only."""
    keep = ctypes.c_long(-1)
    if _libc.syscall(ctypes.c_long(nr_table[platform.machine()]), keep, ctypes.c_long(value), keep) != 0:
        _errno_fail("%s(-1, %d, -1)" % (what, value))


def use_sandbox_fs():
    """File work of the calling thread from now on is done as the sandbox user (fsuid/fsgid, or euid/egid; per thread)."""
    if not SPLIT:
        return
    if FS_MODE == "euid":
        if os.geteuid() == 0:  # the gid first: changing it needs CAP_SETGID, which only euid 0 holds
            _thread_ids(_SYS_SETRESGID, SANDBOX_GID, "setresgid")
            _thread_ids(_SYS_SETRESUID, SANDBOX_UID, "setresuid")
        if os.geteuid() != SANDBOX_UID or os.getegid() != SANDBOX_GID:
            raise OSError("effective uid/gid %d did not take" % SANDBOX_UID)
        return
    _libc.setfsgid(SANDBOX_GID)
    _libc.setfsuid(SANDBOX_UID)
    if _libc.setfsuid(-1) != SANDBOX_UID or _libc.setfsgid(-1) != SANDBOX_GID:
        raise OSError("setfsuid/setfsgid %d did not take" % SANDBOX_UID)


class _RootFs:
    """`with as_root_fs():` file work as root (the executor's own state in STATE_DIR), then back."""

    def __enter__(self):
        if SPLIT and FS_MODE == "euid":
            _thread_ids(_SYS_SETRESUID, 0, "setresuid")  # allowed: the real uid is 0; brings CAP_SETGID back
            _thread_ids(_SYS_SETRESGID, 0, "setresgid")
        elif SPLIT:
            _libc.setfsuid(0)
            _libc.setfsgid(0)
        return self

    def __exit__(self, *exc):
        use_sandbox_fs()
        return False


def as_root_fs():
    return _RootFs()


def spawn_user_args():
    """Popen arguments that start a command as the sandbox user with no groups (empty when there is no split)."""
    if not SPLIT:
        return {}
    if FS_MODE == "euid":
        # From an effective uid of 1000 no setgroups is allowed, nor needed: lock_down emptied the groups.
        return {"user": SANDBOX_UID, "group": SANDBOX_GID}
    return {"user": SANDBOX_UID, "group": SANDBOX_GID, "extra_groups": []}


_signal_lock = threading.Lock()


def can_signal_all():
    """Whether signal_sandbox_user can reach every process of the sandbox user (and only those)."""
    if os.getpid() != 1:
        return False  # kill(-1) outside our own pid namespace would reach the host's processes
    if SPLIT:
        return platform.machine() in _SYS_SETRESUID
    return os.getuid() == SANDBOX_UID  # no split: we are the sandbox user ourselves


def signal_sandbox_user(sig):
    """kill(-1, sig) with the effective uid of the sandbox user, from this thread only (see the module
    docstring). Every process of the sandbox user gets it; we, PID 1, do not. Returns whether any did."""
    if not can_signal_all():
        raise OSError("cannot signal every process of the sandbox user here")

    def kill_all():
        try:
            os.kill(-1, sig)
            return True
        except ProcessLookupError:
            return False

    return as_sandbox_user_signals(kill_all)


def as_sandbox_user_signals(fn):
    """fn() with this thread's effective uid the sandbox user's, so the signals it sends are that user's (the
    executor holds no CAP_KILL): they reach that user's processes only. One thread at a time; the effective
    uid is root's again afterwards, or the executor exits."""
    with _signal_lock:
        if not SPLIT or os.geteuid() == SANDBOX_UID:
            return fn()
        nr = _SYS_SETRESUID.get(platform.machine())
        if nr is None:
            raise OSError("no setresuid syscall number for %s" % platform.machine())
        keep = ctypes.c_long(-1)
        if _libc.syscall(ctypes.c_long(nr), keep, ctypes.c_long(SANDBOX_UID), keep) != 0:
            _errno_fail("setresuid(-1, %d, -1)" % SANDBOX_UID)
        try:
            return fn()
        finally:
            if _libc.syscall(ctypes.c_long(nr), keep, ctypes.c_long(0), keep) != 0:
                # Cannot happen (the real uid is 0); if it did, this thread must not go on as uid 1000.
                os.write(2, b"executor: cannot restore the effective uid; exiting\n")
                os._exit(70)
            use_sandbox_fs()  # setresuid set the fsuid to the euid
