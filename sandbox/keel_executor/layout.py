"""Where the executor keeps its state in the container, and which of it a snapshot keeps.

A snapshot (see snapshots) is taken of SNAPSHOT_ROOTS and nothing else, and a restore
replaces them in a fresh container. So what belongs to one container's lifetime (the
journal of keyed calls, the restore marker, the pool claim, a command's state file
while it runs) lives in STATE_DIR under /tmp, which is not snapshotted; what must
survive a restore (the shell's cwd and environment) lives in HOME_STATE_DIR, inside
/home/keel, which is.
"""

WORKSPACE = "/workspace"
# Container-lifetime state: never snapshotted.
STATE_DIR = "/tmp/.keel"
# Session state that must survive a restore: inside a snapshot root.
HOME_STATE_DIR = "/home/keel/.keel"
SNAPSHOT_ROOTS = ("/workspace", "/home/keel")
