"""`mobikectl lab ...`: each command parses, makes one call on mobikectl.lab.api.Lab, renders."""

from __future__ import annotations

import json
import os
import sys

import click

from mobikectl.errors import NotOk, UsageError
from mobikectl.lab import topology as t
from mobikectl.lab.impair import KINDS

_NAME = click.option("--name", "-n", default="default", show_default=True, metavar="NAME",
                     help="Lab name (namespaces mk-NAME-<node>); several labs can coexist.")
_JSON = click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")


def _lab(name: str):
    from mobikectl.lab.api import Lab

    return Lab(name)


def _emit(doc: dict) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


@click.group("lab")
def lab() -> None:
    """The multi-homed namespace lab with real strongSwan charons.

    \b
    rw (laptop) --eth0--  dock (routed)  --+
                --wlan0-- wifi (NAT44)   --+-- core -- gw (2x IPv4, IPv6, VIP pool) -- srv
                --wwan0-- cell (CGNAT)   --+
    State and VICI sockets: /var/lib/mobikectl/labs/NAME/ (env MOBIKECTL_LAB_ROOT).
    """


@lab.command("up")
@_NAME
@click.option("--uplinks", metavar="LIST", help="Comma list of uplinks to create (default: eth0,wlan0,wwan0).")
@click.option("--profile", type=click.Choice(["stock", "controller"]), default=None,
              help="rw's charon profile: controller (default) or stock (strongSwan's roaming defaults).")
@_JSON
def up_cmd(name: str, uplinks: str | None, profile: str | None, as_json: bool) -> None:
    """Build the lab, start both charons, wait until the tunnel carries traffic.

    Idempotent: on a healthy lab it says so and exits 0; over the leftovers of a crashed
    lab it cleans them up first.
    """
    wanted = [u.strip() for u in uplinks.split(",") if u.strip()] if uplinks is not None else None
    if wanted is not None and not wanted:
        raise click.BadParameter("expected a comma list of uplinks (eth0,wlan0,wwan0), got an empty one",
                                 param_hint="--uplinks")
    parts: list[str] = []

    def progress(step: str, seconds: float) -> None:
        parts.append(f"{step} {seconds:.2f}s")
        click.echo(("" if len(parts) > 1 else f"lab {name}: ") + ("" if len(parts) == 1 else ", ") + parts[-1],
                   err=True, nl=False)

    lab = _lab(name)
    was_up = lab.state is not None
    try:
        result = lab.up(uplinks=wanted, profile=profile, progress=progress)
    except KeyboardInterrupt:
        if not was_up:  # a half-built lab is worth nothing: take it away again
            click.echo(f"\nlab {name}: interrupted; removing the half-built lab", err=True)
            lab.down()
        else:
            click.echo(f"\nlab {name}: interrupted; run `mobikectl lab down --name {name}` to remove it", err=True)
        raise
    if parts:
        click.echo("", err=True)
    if result["already_up"]:
        click.echo(f"lab {name} is already up (healthy): nothing to do", err=True)
    else:
        click.echo(f"lab {name} is up: uplinks {','.join(result['uplinks'])}, profile {result['profile']}, "
                   f"virtual IP {result['vip']} reaches {t.SRV_ADDR}; state in {result['state_dir']}", err=True)
    if as_json:
        _emit({"schema": 1, **result, "timings": {k: round(v, 3) for k, v in result["timings"].items()}})


@lab.command("down")
@_NAME
@click.option("--all", "all_labs", is_flag=True, help="Remove every mobikectl lab (all mk-* namespaces).")
@_JSON
def down_cmd(name: str, all_labs: bool, as_json: bool) -> None:
    """Remove everything the lab created: charons (by PID), namespaces, state. Idempotent."""
    from mobikectl.lab.api import Lab

    result = Lab.down_all() if all_labs else _lab(name).down()
    n = len(result["removed_namespaces"])
    click.echo(f"lab {'(all)' if all_labs else name}: removed {n} namespace{'s' if n != 1 else ''}", err=True)
    if as_json:
        _emit({"schema": 1, **result})


@lab.command("status")
@_NAME
@_JSON
def status_cmd(name: str, as_json: bool) -> None:
    """Nodes, addresses, charons, SAs (endpoints, SPIs, virtual IP), tunnel reachability.

    Exit 1 when the lab is not up or the tunnel carries no traffic.
    """
    from mobikectl.lab.status import render_text

    doc = _lab(name).status()
    if as_json:
        _emit(doc)
    else:
        click.echo(render_text(doc))
    if not doc["up"]:
        sys.exit(1)


@lab.command("impair", context_settings={"ignore_unknown_options": True})
@_NAME
@click.argument("uplink", type=click.Choice(list(t.ALL_UPLINKS)))
@click.argument("kind", type=click.Choice(list(KINDS)))
@click.argument("arg", required=False)
def impair_cmd(name: str, uplink: str, kind: str, arg: str | None) -> None:
    """Impair one uplink (recorded in state.json; `lab clear` undoes it).

    \b
    down            the laptop's link admin-down (IPv4 routes flushed by the kernel)
    up              the laptop's link up again, addresses and default routes restored
    carrier         the router's end goes down: link admin-up but NO-CARRIER (Wi-Fi
                    losing association)
    blackhole       the router drops everything to and from the laptop on that uplink
    loss PCT        random loss of PCT percent in each direction
    drop-udp PORT   the router drops UDP to and from PORT (e.g. 4500)
    nat-remap       NATed uplinks (wlan0, wwan0): the NAT forgets the laptop's mappings
                    and shifts its port range: the next packet leaves from a new port
    mtu N           the router forwards at most N bytes, silently drops larger packets
    """
    record = _lab(name).impair(uplink, kind, arg)
    from mobikectl.lab.impair import describe

    click.echo(f"lab {name}: {uplink}: {describe(record)}", err=True)


@lab.command("clear")
@_NAME
@click.argument("uplink", required=False, type=click.Choice(list(t.ALL_UPLINKS)))
def clear_cmd(name: str, uplink: str | None) -> None:
    """Undo the impairments of UPLINK (default: of every uplink)."""
    cleared = _lab(name).clear(uplink)
    click.echo(f"lab {name}: cleared {','.join(cleared)}", err=True)


@lab.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@_NAME
@click.argument("node", type=click.Choice(list(t.NODES)))
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(name: str, node: str, argv: tuple[str, ...]) -> None:
    """Run a command in a node's namespace: mobikectl lab exec rw -- ping 10.200.0.10

    In rw and gw the environment tells where that node's charon is: STRONGSWAN_CONF,
    MOBIKECTL_LAB_DIR and MOBIKECTL_VICI (unix:///.../charon.vici). The exit code is passed back.
    """
    from mobikectl.lab.netns import require_root

    require_root("mobikectl lab exec")
    lab_ = _lab(name)
    if lab_.state is None:
        raise NotOk(f"lab {name!r} is not up: run mobikectl lab up --name {name}")
    args = list(argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise UsageError("lab exec: give a command after the node: mobikectl lab exec rw -- CMD ...")
    full, env = lab_._argv_env(node, args, None)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(full[0], full, env)


@lab.command("restart-charon")
@_NAME
@click.argument("node", type=click.Choice(["rw", "gw"]))
def restart_cmd(name: str, node: str) -> None:
    """Restart a charon (SIGTERM, fresh private /run), load its configs again
    (swanctl --load-all); on rw also initiate the connection again."""
    result = _lab(name).restart_charon(node)
    extra = ", tunnel up" if result["tunnel"] else ", tunnel down: rw has no SA until it initiates again " \
        f"(mobikectl lab restart-charon --name {name} rw, or the controller)"
    click.echo(f"lab {name}: charon in {node} restarted (pid {result['pid']}, {result['seconds']:.2f}s{extra})", err=True)
