"""The error tree. Each error is one line for the user and carries its exit code.

Exit codes (documented in README.md, tested in tests/unit/test_cli_errors.py):
    0  ok
    1  ran, but the result is not ok (a check failed, a tunnel is down)
    2  usage error (click's own)
    65 bad data: a policy, settings or recorded-facts file, a malformed message
    69 unavailable: charon, the daemon, a tool or a package is missing or unreachable
    70 internal error (a bug): run with --debug for the traceback
    77 permission denied: not root, or not allowed by the daemon
"""

from __future__ import annotations

EX_OK = 0
EX_NOT_OK = 1
EX_USAGE = 2
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_NOPERM = 77


class MobikectlError(Exception):
    """Base of every error meant for the user: a one-line message and an exit code."""

    exit_code = EX_SOFTWARE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotOk(MobikectlError):
    """The command ran but what it checked is not ok."""

    exit_code = EX_NOT_OK


class UsageError(MobikectlError):
    exit_code = EX_USAGE


class DataError(MobikectlError):
    """Bad input data. `problems` lists every error found (all of a file at once)."""

    exit_code = EX_DATAERR

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class Unavailable(MobikectlError):
    """Something needed is missing or unreachable: charon, a tool, the daemon."""

    exit_code = EX_UNAVAILABLE


class ToolMissing(Unavailable):
    def __init__(self, tool: str, package: str) -> None:
        super().__init__(f"{tool} not found: install the Debian package {package} (apt-get install {package})")
        self.tool = tool
        self.package = package


class PermissionDenied(MobikectlError):
    exit_code = EX_NOPERM


class NotRoot(PermissionDenied):
    def __init__(self, what: str) -> None:
        super().__init__(f"{what} needs root: run it as root (sudo mobikectl ...)")


class InternalError(MobikectlError):
    exit_code = EX_SOFTWARE
