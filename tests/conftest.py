"""Shared for every test: subprocesses run the `mobikectl` of the environment under test
(the venv running pytest), not whichever one /usr/local/bin/mobikectl points at."""

import os
import sys
from pathlib import Path

_bin = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _bin:
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")
