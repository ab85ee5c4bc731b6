"""Shared for every test: subprocesses run the `mobikectl` of the environment under test
(the venv running pytest), not whichever one /usr/local/bin/mobikectl points at."""

import os
import sys
from pathlib import Path

import pytest

_bin = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _bin:
    os.environ["PATH"] = _bin + os.pathsep + os.environ.get("PATH", "")


def _other_users_can_run_us() -> str | None:
    """None if uid 65534 can run this environment's `mobikectl`, else why not (a checkout
    under a directory only root may enter, such as one made by `mktemp -d`)."""
    import shutil
    import subprocess

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return "setpriv missing (apt-get install util-linux)"
    script = os.path.join(_bin, "mobikectl")
    done = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                           sys.executable, "-c", f"open({script!r}).close(); import click"],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return (f"other users cannot run {script} (the checkout or its venv is not readable by them); "
                f"the non-root cases need a checkout others may read (unit tests cover exit 77 too)")
    return None


@pytest.fixture(scope="session")
def non_root_runs():
    """Skips (with the reason) a test that runs `mobikectl` as another user, when that user
    cannot run this checkout at all."""
    reason = _other_users_can_run_us()
    if reason:
        pytest.skip(reason)
