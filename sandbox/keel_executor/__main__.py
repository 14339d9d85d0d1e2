"""Entry point: `python3 -u /opt/keel/executor.py [--pool-lease N]` (the launcher) or
`python3 -m keel_executor [--pool-lease N]`.

Builds the parts, lists every op of the protocol in one table, starts the
background threads (pool lease, orphan reaper) and serves stdin until the
container stops.
"""

import os
import sys
import threading

from . import tools
from .layout import STATE_DIR
from .pool import Pool
from .reaping import reap_forever
from .server import Server, log
from .shell import Shell
from .snapshots import Snapshotter


def _not_dumpable():
    """Commands run as our uid. Without this they could open /proc/<our pid>/fd/0 and fd/1,
    the protocol's stdin and stdout, to steal requests or forge answers."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE, 0
            log("prctl(PR_SET_DUMPABLE) failed: errno %d" % ctypes.get_errno())
    except Exception as e:  # an executor without this is weaker, not broken
        log("cannot make the executor non-dumpable: %s" % e)


def main():
    _not_dumpable()
    lease = None
    if len(sys.argv) == 3 and sys.argv[1] == "--pool-lease":
        lease = float(sys.argv[2])
    pool = Pool(lease)
    snapshots = Snapshotter()
    os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
    shell = Shell()

    def ping(rid, args):
        return {"pong": True, "pid": os.getpid(), "restoredFrom": snapshots.restored_from(), "claim": pool.claim}

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
    })
    if lease is not None:
        threading.Thread(target=pool.watch_lease, daemon=True).start()
    if os.getpid() == 1:
        threading.Thread(target=reap_forever, daemon=True).start()
    log("ready (pid %d%s)" % (os.getpid(), ", pool lease %gs" % lease if lease is not None else ""))
    server.run(sys.stdin.buffer)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
