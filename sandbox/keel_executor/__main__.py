"""Entry point: `python3 -u /opt/keel/executor.py [--pool-lease N] [--nproc N]` (the launcher) or
`python3 -m keel_executor [--pool-lease N] [--nproc N]`.

--nproc N (given under gVisor, which has no pids cgroup inside the sandbox) sets RLIMIT_NPROC to N for
the executor and so for every command: gVisor's kernel enforces it for the commands' uid (see reaping).

Locks itself down first (privileges: the split between the root executor and the
uid 1000 commands), builds the parts, lists every op of the protocol in one table,
starts the background threads (pool lease, orphan reaper) and serves stdin until
the container stops.
"""

import os
import stat
import sys
import threading

from . import privileges, safefs, tools
from .layout import STATE_DIR
from .mcp_servers import McpServers
from .pool import Pool
from .reaping import limit_processes, reap_forever
from .server import Server, log
from .shell import Shell
from .snapshots import Snapshotter


def _state_dir():
    """STATE_DIR: root's and 0700 (a tmpfs mounted so by the host; made so here when it is not)."""
    with privileges.as_root_fs():
        try:
            os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
            st = os.lstat(STATE_DIR)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                log("%s is not a directory of ours; executor state there is not private" % STATE_DIR)
            elif stat.S_IMODE(st.st_mode) != 0o700:
                os.chmod(STATE_DIR, 0o700)
        except OSError as e:
            log("cannot prepare %s: %s" % (STATE_DIR, e))


def _options(argv):
    """{"--pool-lease": float, "--nproc": int} from the command line; anything else is said in the log and ignored."""
    options = {}
    args = iter(argv)
    for flag in args:
        value = next(args, None)
        try:
            if flag == "--pool-lease" and value is not None:
                options[flag] = float(value)
                continue
            if flag == "--nproc" and value is not None:
                options[flag] = int(value)
                continue
        except ValueError:
            pass
        log("ignoring argument %r %r" % (flag, value))
    return options


def main():
    # First, while this is the only thread: capabilities and the file identity are per thread.
    split = privileges.lock_down(log)
    options = _options(sys.argv[1:])
    lease = options.get("--pool-lease")
    if "--nproc" in options:
        limit_processes(options["--nproc"], log)
    _state_dir()
    pool = Pool(lease)
    snapshots = Snapshotter()
    shell = Shell()
    mcp = McpServers()

    def ping(rid, args):
        return {"pong": True, "pid": os.getpid(), "restoredFrom": snapshots.restored_from(), "claim": pool.claim,
                "privilegeSplit": split, "resolver": safefs.RESOLVER}

    def cancel(rid, args):
        # The target may be waiting on a key another request owns: the server knows which.
        return shell.cancel(server.requests_for(args.get("target")))

    server = Server({
        "ping": ping,
        "claim": pool.op_claim,
        "lease": pool.op_lease,
        "snapshot": snapshots.op_snapshot,
        "load_manifest": snapshots.op_load_manifest,
        "get_manifest": snapshots.op_get_manifest,
        "read_files": snapshots.op_read_files,
        "restore_begin": snapshots.op_restore_begin,
        "write_files": snapshots.op_write_files,
        "restore_finish": snapshots.op_restore_finish,
        "cancel": cancel,
        "shell": shell.op_shell,
        "read_file": tools.op_read_file,
        "write_file": tools.op_write_file,
        "edit_file": tools.op_edit_file,
        "list_files": tools.op_list_files,
        "mcp": mcp.op_mcp,
    })
    if lease is not None:
        threading.Thread(target=pool.watch_lease, daemon=True).start()
    if os.getpid() == 1:
        threading.Thread(target=reap_forever, daemon=True).start()
    log("ready (pid %d, %s, paths by %s%s%s)" % (os.getpid(), "privilege split" if split else "no privilege split",
                                                   safefs.RESOLVER, ", pool lease %gs" % lease if lease is not None else "",
                                                   ", RLIMIT_NPROC %d" % options["--nproc"] if "--nproc" in options else ""))
    server.run(sys.stdin.buffer)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
