"""Keel sandbox executor: the one long-lived process of a sandbox container.

It is the container's PID 1 and speaks JSON lines on stdin/stdout with the host
(activities/sandbox/executor-client.ts). One module per concern:

    server     the JSON-lines protocol: dispatch, answers, idempotency keys, worker threads
    privileges the split: the executor root with CAP_SETUID/CAP_SETGID, commands uid 1000 with none
    safefs     how a path is opened so a command cannot turn it against the executor
    tools      the file tools (read_file, write_file, edit_file, list_files) and ToolError
    shell      the shell tool: how a command is spawned, its output, its saved cwd and environment
    snapshots  content-addressed snapshots of the writable files, and restores
    pool       the warm pool: --pool-lease, claim and lease
    reaping    PID 1's duties: reaping orphans, stopping every process of the sandbox user
    layout     where state lives in the container, who may touch it, which of it a snapshot keeps
    __main__   the entry point: builds the parts, lists the ops, serves stdin

The image starts it as `python3 -u /opt/keel/executor.py` (sandbox/executor.py, a
launcher beside this package; it says why not `python3 -m keel_executor`).

Python 3 standard library only.
"""
