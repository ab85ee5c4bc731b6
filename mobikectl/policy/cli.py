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
