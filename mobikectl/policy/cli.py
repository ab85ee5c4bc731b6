"""`mobikectl policy ...`: policy files, offline. Each command parses, makes one call,
renders: readable text by default, one JSON document with `"schema": 1` under --json.

    policy check FILE... [--json]                         validate; 0 all ok, 65 any bad
    policy explain [--policy FILE] [--state FILE | --socket PATH] [--json]
                                                          which uplink the policy picks, and why
    policy simulate FILE --inputs RECORDING [--json]      replay recorded facts through the engine
"""

from __future__ import annotations

import json

import click

from mobikectl.errors import EX_DATAERR, DataError
from mobikectl.policy.load import load_policy
from mobikectl.policy.model import SCHEMA, Policy


def _emit(doc: dict) -> None:
    click.echo(json.dumps({"schema": SCHEMA, **doc}, indent=2))


@click.group("policy")
def policy() -> None:
    """Check policy files, explain a decision, simulate a recorded run (all offline)."""


# --- check -----------------------------------------------------------------------------------

def summary(p: Policy) -> str:
    n = len(p.uplinks)
    return f"{n} uplink{'s' if n != 1 else ''}, prefer {' > '.join(p.prefer)}"


@policy.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.pass_context
def check(ctx: click.Context, files: tuple[str, ...], as_json: bool) -> None:
    """Validate policy FILEs: every problem of every file, exit 65 if any is bad."""
    results = []
    for name in files:
        try:
            loaded = load_policy(name)
        except DataError as exc:
            results.append({"file": name, "ok": False, "problems": list(exc.problems)})
        else:
            results.append({"file": name, "ok": True, "problems": [], "uplinks": len(loaded.uplinks),
                            "prefer": list(loaded.prefer), "summary": summary(loaded)})
    if as_json:
        _emit({"files": results})
    else:
        for result in results:
            if result["ok"]:
                click.echo(f"{result['file']}: ok ({result['summary']})")
            for problem in result["problems"]:
                click.echo(problem)
    if not all(result["ok"] for result in results):
        ctx.exit(EX_DATAERR)


# --- explain ---------------------------------------------------------------------------------

@policy.command("explain")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False, path_type=str),
              help="Policy file. Default: the built-in default policy (policies/default.toml).")
@click.option("--state", "state_file", type=click.Path(dir_okay=False, path_type=str),
              help="A recorded state (the JSON of `mobikectl status --json`) instead of the daemon.")
@click.option("--socket", "socket_path", type=click.Path(path_type=str),
              help="The daemon's control socket (default: $MOBIKECTL_SOCKET or /run/mobikectl/mobikectl.sock).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def explain_cmd(policy_file: str | None, state_file: str | None, socket_path: str | None, as_json: bool) -> None:
    """Which uplink the policy picks for a state, and why, step by step."""
    from mobikectl.policy.explain import explain, parse_state, render

    if state_file and socket_path:
        raise click.UsageError("give --state FILE or --socket PATH, not both")
    chosen = load_policy(policy_file) if policy_file else Policy()
    if state_file:
        source, doc = state_file, _read_json(state_file)
    else:
        source, doc = _ask_daemon(socket_path)
    result = explain(chosen, parse_state(doc, source))
    if as_json:
        _emit({"policy": chosen.source, "state": source, **result.to_json()})
    else:
        click.echo(render(chosen, result))


def _read_json(path: str) -> object:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc} (check the path and its permissions)") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: cannot read: not UTF-8 text (a state file is JSON)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None


def _ask_daemon(socket_path: str | None) -> tuple[str, object]:
    """The running daemon's state over its control socket (`{"cmd": "state"}`)."""
    from mobikectl.errors import Unavailable
    from mobikectl.settings import ControlSettings

    path = socket_path or ControlSettings().socket
    try:
        from mobikectl.adapters.control_client import request
    except ImportError:
        raise Unavailable(f"cannot reach the daemon at {path}: this mobikectl has no control client "
                          "(use --state FILE with the JSON of `mobikectl status --json`)") from None
    try:
        reply = request(path, {"cmd": "state"})
    except OSError as exc:
        raise Unavailable(f"cannot reach the daemon at {path}: {exc.strerror or exc} "
                          "(is `mobikectl run` running? or use --state FILE)") from None
    if isinstance(reply, dict) and "uplinks" not in reply and isinstance(reply.get("state"), dict):
        reply = reply["state"]
    if isinstance(reply, dict) and reply.get("ok") is False and "uplinks" not in reply:
        raise Unavailable(f"the daemon at {path} refused the state request: {reply.get('error', 'no reason given')}")
    return f"daemon at {path}", reply


# --- simulate --------------------------------------------------------------------------------

@policy.command("simulate")
@click.argument("policy_file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--inputs", "inputs", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="Recorded facts (JSON lines, as `mobikectl run --record` writes them).")
@click.option("--until", type=float, default=None, help="Run the engine's timers up to this time after the last fact.")
@click.option("--orders-only", is_flag=True, help="Only the orders (SteerTo, Initiate, ...), not the notes.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def simulate_cmd(policy_file: str, inputs: str, until: float | None, orders_only: bool, as_json: bool) -> None:
    """Replay recorded facts through the engine with POLICY_FILE, offline; print the decisions."""
    from mobikectl.policy.simulate import render, simulate

    chosen = load_policy(policy_file)
    try:
        with open(inputs, encoding="utf-8") as handle:
            lines = handle.readlines()
    except OSError as exc:
        raise DataError(f"{inputs}: cannot read: {exc.strerror or exc} (check the path and its permissions)") from None
    except UnicodeDecodeError:
        raise DataError(f"{inputs}: cannot read: not UTF-8 text (a recording is JSON lines)") from None
    decisions = simulate(chosen, lines, inputs, until=until)
    if orders_only:
        decisions = [d for d in decisions if d.order != "Note"]
    if as_json:
        _emit({"policy": chosen.source, "inputs": inputs, "decisions": [d.to_json() for d in decisions]})
    else:
        click.echo(render(decisions, notes=not orders_only))
