"""Where the executor keeps its state in the container, who may touch it, and which of it a snapshot keeps.

A snapshot (see snapshots) is taken of SNAPSHOT_ROOTS and nothing else, and a restore
replaces them in a fresh container. So what belongs to one container's lifetime (the
trace of keyed calls, the restore marker, the pool claim) lives in STATE_DIR, a
root-owned 0700 tmpfs that commands can neither read nor write nor fill; what
must survive a restore (the shell's cwd and environment) lives in HOME_STATE_DIR,
inside /home/keel, which is snapshotted and belongs to the session. The file a
command's EXIT trap writes its state to is written by the command itself, so it
lives in the sandbox user's SHELL_SCRATCH_DIR under /tmp (not snapshotted).
"""

WORKSPACE = "/workspace"
# Container-lifetime state of the executor: a tmpfs mounted root-owned 0700 (host/lockdown.ts). Never snapshotted.
STATE_DIR = "/run/keel"
# Session state that must survive a restore: inside a snapshot root.
HOME_STATE_DIR = "/home/keel/.keel"
# Where a command's EXIT trap leaves its cwd and environment for the executor to pick up.
SHELL_SCRATCH_DIR = "/tmp/.keel-shell"
SNAPSHOT_ROOTS = ("/workspace", "/home/keel")
# The only places write_file and edit_file write to (each its own mount).
WRITABLE_ROOTS = ("/workspace", "/home/keel", "/tmp")
# What no file tool opens, lists or passes through.
FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")
# The sandbox user: every command runs as it, and the executor does its file work with its file identity.
SANDBOX_UID = 1000
SANDBOX_GID = 1000
