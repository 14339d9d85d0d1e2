"""The warm pool: containers made before any session needs them.

Started with `--pool-lease N`, the executor serves a container made before any
session needs it. It exits N seconds after the last `lease` unless a `claim`
binds it to one session (for good; other sessions are refused), so the pool of
a worker that died stops by itself (and the host's reaper removes it).
Containers made for a session refuse claims.
"""

import json
import os
import threading
import time

from . import privileges
from .layout import STATE_DIR
from .server import log
from .tools import ToolError

# The session this container serves, once a pool owner has claimed it (root-only: see layout).
CLAIM_PATH = os.path.join(STATE_DIR, "claim")


class Pool:
    def __init__(self, lease_sec=None):
        self.lock = threading.Lock()
        # Pool containers start unclaimed with a lease their owner renews; see op_claim.
        self.claim = _read_json(CLAIM_PATH)
        self.pool_lease_sec = lease_sec
        self.lease_until = None if lease_sec is None else time.monotonic() + lease_sec

    def op_claim(self, rid, args):
        session, generation = args.get("session"), args.get("generation")
        if not isinstance(session, str) or not session or not isinstance(generation, int):
            raise ToolError("InvalidArguments", "session (string) and generation (integer) are required")
        with self.lock:
            if self.pool_lease_sec is None:
                raise ToolError("NotPooled", "this container was created for its session, not for a pool")
            if self.claim is None:
                if self.lease_until is not None and time.monotonic() > self.lease_until:
                    raise ToolError("LeaseExpired", "this pool container's lease ran out; it is shutting down")
                self.claim = {"session": session, "generation": generation, "at": time.time()}
                self.lease_until = None
                with privileges.as_root_fs(), open(CLAIM_PATH, "w") as f:
                    json.dump(self.claim, f)
            elif self.claim.get("session") != session or self.claim.get("generation") != generation:
                raise ToolError("AlreadyClaimed", "this container serves session %s generation %s" % (self.claim.get("session"), self.claim.get("generation")))
            return {"claim": self.claim}

    def op_lease(self, rid, args):
        with self.lock:
            if self.claim is None and self.lease_until is not None:
                self.lease_until = time.monotonic() + self.pool_lease_sec
            return {"claimed": self.claim is not None}

    def watch_lease(self):
        """Exit the container when an unclaimed pool lease runs out."""
        while True:
            time.sleep(1)
            with self.lock:
                if self.claim is None and self.lease_until is not None and time.monotonic() > self.lease_until:
                    log("pool lease expired unclaimed; exiting")
                    os._exit(0)


def _read_json(path):
    try:
        with privileges.as_root_fs(), open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
