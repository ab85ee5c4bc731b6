"""The `mobikectl` command: one click group; each command parses, makes one call, renders.

Command groups live beside the code they drive and are attached here:
    lab ...            mobikectl.lab.cli        (the namespace lab)
    run                mobikectl.cli_run        (the controller daemon)
    status, ...        mobikectl.cli_daemon     (talking to the running daemon)
    policy ...         mobikectl.policy.cli     (policy files)
    bench              mobikectl.bench.cli      (the shipped benchmark)
    demo               mobikectl.demo           (the README's main job)

Errors: every MobikectlError becomes one line on stderr and its exit code (see errors.py);
anything else is a bug: exit 70, with the traceback only under --debug.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from mobikectl import __version__
from mobikectl.errors import EX_SOFTWARE, DataError, MobikectlError

log = logging.getLogger("mobikectl")

_SUBCOMMANDS = (
    ("mobikectl.lab.cli", "lab"),
    ("mobikectl.cli_run", "commands"),
    ("mobikectl.cli_daemon", "commands"),
    ("mobikectl.policy.cli", "policy"),
    ("mobikectl.bench.cli", "bench"),
    ("mobikectl.demo", "demo"),
)


class _Group(click.Group):
    """Turns MobikectlError into a one-line message and its exit code."""

    def invoke(self, ctx: click.Context):  # noqa: D401
        try:
            return super().invoke(ctx)
        except MobikectlError as exc:
            _report(exc, ctx)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("mobikectl: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # a bug: say so, keep the traceback for --debug
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(
                f"mobikectl: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
                err=True,
            )
            ctx.exit(EX_SOFTWARE)


def _report(exc: MobikectlError, ctx: click.Context) -> None:
    if isinstance(exc, DataError) and len(exc.problems) > 1:
        for problem in exc.problems:
            click.echo(f"mobikectl: error: {problem}", err=True)
    else:
        click.echo(f"mobikectl: error: {exc.message}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Verbose logs and tracebacks on internal errors.")
@click.option("--log-format", type=click.Choice(["plain", "json"]), default="plain", show_default=True,
              help="Format of the logs on stderr.")
@click.version_option(__version__, prog_name="mobikectl")
@click.pass_context
def main(ctx: click.Context, debug: bool, log_format: str) -> None:
    """Keep a strongSwan IKEv2/MOBIKE road-warrior VPN on the best working uplink."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    from mobikectl.logs import setup_logging

    setup_logging(debug=debug, fmt=log_format)


def _attach() -> None:
    for module_name, attr in _SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # not built yet
            raise
        obj = getattr(module, attr)
        if isinstance(obj, (list, tuple)):
            for cmd in obj:
                main.add_command(cmd)
        else:
            main.add_command(obj)


_attach()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
