#!/usr/bin/env python3
"""Start the Keel sandbox executor: the package keel_executor that sits beside this file.

The image runs `python3 -u /opt/keel/executor.py [--pool-lease N]`, with the package at
/opt/keel/keel_executor/. Why a launcher and not the alternatives:
- `python3 -m keel_executor` needs the package on sys.path: PYTHONPATH in the image
  environment would leak into every command run in the sandbox, and -m puts the
  working directory (/workspace, the agent's) first on sys.path, so a folder
  /workspace/keel_executor would be run instead of ours.
- `python3 /opt/keel/keel_executor` (running the folder) imports its modules as
  top-level ones, so the package's relative imports break.
A script's own folder is first on sys.path (unless python3 runs with -I or -P); it is
put there explicitly, so the package imported is always the one beside this file.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from keel_executor.__main__ import main  # noqa: E402  (needs the sys.path entry above)

if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
