"""Commands that talk to the running daemon over its control socket:

    mobikectl status                          uplinks, SAs, the chosen path and why, last moves
    mobikectl paths                           per path: health, RTT, loss, last probe, probe bytes
    mobikectl events [--follow] [--since N]   one event a line (--json: JSON lines)
    mobikectl switch UPLINK [--for 5m] [--force] | switch --auto
    mobikectl reload [--policy FILE]

Each command parses, makes one call through mobikectl.adapters.control_client, renders
(mobikectl.cli_render). Common options: --socket PATH (default $MOBIKECTL_SOCKET or
/run/mobikectl/mobikectl.sock), --lab NAME (the daemon of a lab's road warrior, at
$MOBIKECTL_LAB_ROOT/NAME/rw/mobikectl.sock), --json (one JSON document with "schema": 1).
`mobikectl run` lives in mobikectl/cli_run.py.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys

import click

from mobikectl import cli_render as render
from mobikectl.adapters import control_client
from mobikectl.errors import NotOk, PermissionDenied
from mobikectl.settings import DEFAULT_CONTROL_SOCKET

LAB_SOCKET = "mobikectl.sock"  # in the lab's road-warrior directory (mobikectl.lab.state)


def socket_for(socket_path: str | None, lab: str | None) -> str:
    if socket_path and lab:
        raise click.UsageError("give --socket PATH or --lab NAME, not both")
    if lab:
        from mobikectl.errors import Unavailable
        from mobikectl.lab.state import StateDir

        node = StateDir(lab).node_dir("rw")
        if not node.is_dir():
            raise Unavailable(f"lab {lab!r} is not up (no {node}): start it with `mobikectl lab up --name {lab}`")
        return str(node / LAB_SOCKET)
    return socket_path or os.environ.get("MOBIKECTL_SOCKET") or DEFAULT_CONTROL_SOCKET


def daemon_options(fn):
    """--socket, --lab and --json; the command gets `path` and `as_json`."""

    @click.option("--socket", "socket_path", metavar="PATH", default=None,
                  help=f"The daemon's control socket.  [default: $MOBIKECTL_SOCKET or {DEFAULT_CONTROL_SOCKET}]")
    @click.option("--lab", metavar="NAME", default=None,
                  help="Talk to the daemon of lab NAME's road warrior (its socket in the lab's state directory).")
    @click.option("--json", "as_json", is_flag=True, help='One JSON document on stdout, with "schema": 1.')
    @functools.wraps(fn)
    def wrapper(socket_path, lab, as_json, **kwargs):
        return fn(path=socket_for(socket_path, lab), as_json=as_json, **kwargs)

    return wrapper


def _change(path: str, req: dict) -> dict:
    """A request that changes the daemon (root only): a socket refusing the connect says so."""
    try:
        return control_client.request(path, req)
    except PermissionDenied as exc:
        if "cannot connect" not in exc.message:
            raise  # the daemon's own refusal says what is needed
        raise PermissionDenied(f"cannot connect to the mobikectl daemon at {path}: permission denied "
                               f"(`mobikectl {req['cmd']}` needs root)") from None


def _print_json(doc: dict) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


@click.command("status")
@daemon_options
def status(path: str, as_json: bool) -> None:
    """The running controller: uplinks, SAs, the chosen path and why, the last moves.

    Exit status 1 when the tunnel is not ok (no established SA, or its uplink is down).
    """
    reply = control_client.request(path, {"cmd": "status"})
    view = reply.get("status")
    if not isinstance(view, dict):
        raise control_client.error_for(65, f"the daemon at {path} sent a status reply without a status object")
    if as_json:
        _print_json(reply)
    else:
        click.echo(render.status(view))
    problem = render.not_ok(view)
    if problem:
        raise NotOk(problem)


@click.command("paths")
@daemon_options
def paths(path: str, as_json: bool) -> None:
    """Every path: health, RTT, loss, last probe, probe bytes."""
    reply = control_client.request(path, {"cmd": "paths"})
    if as_json:
        _print_json(reply)
    else:
        click.echo(render.paths(reply))


@click.command("events")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the daemon stops (Ctrl-C ends).")
@click.option("--since", type=click.IntRange(min=0), default=None, metavar="SEQ",
              help="Start after event number SEQ (the daemon keeps its last 1000 events).")
@daemon_options
def events(path: str, as_json: bool, follow: bool, since: int | None) -> None:
    """The daemon's events: probe transitions, decisions with reasons, moves, charon events.

    Without --follow: the kept events (after --since), then exit. With --follow and no
    --since: only new events. --json prints one JSON object a line, each with "schema": 1.
    """
    try:
        for event in control_client.events(path, follow=follow, since=since):
            if as_json:
                click.echo(json.dumps(event, sort_keys=True))
            else:
                click.echo(render.event(event))
    except BrokenPipeError:  # the reader went away (`events --follow | head`): done, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail too


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'90', '90s', '5m', '1h30m', '1.5h' -> seconds (> 0). ValueError otherwise."""
    text = text.strip().lower()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not text or pos != len(text) or total <= 0:
        raise ValueError(text)
    return total


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_duration(value)
        except ValueError:
            self.fail(f"{value!r}: expected a duration > 0 such as 90s, 5m, 1h30m", param, ctx)


@click.command("switch")
@click.argument("uplink", required=False)
@click.option("--for", "duration", type=Duration(), default=None,
              help="How long the override lasts (90s, 5m, 1h). Default: until `switch --auto`.")
@click.option("--force", is_flag=True, help="Switch even to an uplink the controller thinks is unhealthy.")
@click.option("--auto", is_flag=True, help="End the override: the policy decides again.")
@daemon_options
def switch(path: str, as_json: bool, uplink: str | None, duration: float | None, force: bool, auto: bool) -> None:
    """Put the tunnel on UPLINK (a manual override the controller honours), or --auto.

    A switch to an uplink that is not healthy is refused (exit 1) unless --force. Needs root.
    """
    if auto:
        if uplink or duration is not None or force:
            raise click.UsageError("switch --auto takes no UPLINK, --for or --force")
        req: dict = {"cmd": "switch", "auto": True}
    elif not uplink:
        raise click.UsageError("give an UPLINK to switch to, or --auto")
    else:
        req = {"cmd": "switch", "uplink": uplink, "for": duration, "force": force}
    reply = _change(path, req)
    if as_json:
        _print_json(reply)
    else:
        click.echo(render.switch(req, reply))


@click.command("reload")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), default=None,
              help="Load this policy file instead of the one the daemon was started with.")
@daemon_options
def reload(path: str, as_json: bool, policy_file: str | None) -> None:
    """Reload the policy, all or nothing: a bad file leaves the running policy in force
    (exit 65 with every problem). Needs root."""
    req = {"cmd": "reload", "policy": os.path.abspath(policy_file) if policy_file else None}
    reply = _change(path, req)
    if as_json:
        _print_json(reply)
    else:
        click.echo(render.reload(req, reply))


# `mobikectl run` is in mobikectl/cli_run.py (its own `commands` list); cli.py attaches both.
commands = [status, paths, events, switch, reload]
