"""`mobikectl bench`: the shipped benchmark (charon alone vs charon + mobikectl on the lab).

    mobikectl bench [--trials N] [--faults blackhole,carrier,down,failback] [--json]
                    [--name LAB] [--policy FILE] [--out FILE] [--sim-days D]

Progress with timings goes to stderr; the table (or, with --json, one document with
"schema": 1) to stdout, and to --out FILE too. Exit 0 when it ran (missed targets are
reported, not an error), 77 not root, 69 lab tools missing. docs/benchmark.md has the
method and the figures.
"""

from __future__ import annotations

import json
import signal

import click

from mobikectl.bench.report import FAULT_ORDER


def _faults(ctx, param, value: str) -> tuple[str, ...]:
    names = tuple(f.strip() for f in value.split(",") if f.strip())
    bad = [f for f in names if f not in FAULT_ORDER]
    if bad or not names:
        raise click.BadParameter(f"use a comma-separated subset of {','.join(FAULT_ORDER)} (got {value!r})")
    return tuple(f for f in FAULT_ORDER if f in names)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@click.command("bench")
@click.option("--trials", "-n", type=click.IntRange(min=1), default=10, show_default=True,
              help="Trials per fault for the controller (charon alone: link down min(5, N), the others 1).")
@click.option("--faults", default=",".join(FAULT_ORDER), show_default=True, callback=_faults,
              help="Faults to measure on the active uplink wlan0.")
@click.option("--json", "as_json", is_flag=True, help='One JSON document on stdout ("schema": 1).')
@click.option("--name", default="bench", show_default=True, help="Lab name (created and removed by the run).")
@click.option("--policy", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The controller's policy.  [default: policies/default.toml, the shipped defaults]")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the result (table, or JSON with --json) to FILE.")
@click.option("--sim-days", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Simulated days for the false-move figure (0 skips it; a day takes ~15 s of CPU).")
def bench(trials: int, faults: tuple[str, ...], as_json: bool, name: str, policy: str | None,
          out_file: str | None, sim_days: float) -> None:
    """Measure charon alone and charon + mobikectl on the same faults of the active uplink
    (blackhole, carrier loss, link down, failback after recovery) in the lab: the tunnel
    gap of a 100 Hz ping per trial, medians, maxima, ratios and the targets, the probe
    floor and probe bytes, RSS and CPU, the simulated false-move rate. Long: about
    (30 s + 20 s x faults) x trials."""
    from mobikectl.bench.controller import DEFAULT_POLICY
    from mobikectl.bench.report import render
    from mobikectl.bench.run import Options, run_bench

    signal.signal(signal.SIGTERM, _interrupt)  # the lab is removed on SIGTERM as on Ctrl-C
    opts = Options(trials=trials, faults=faults, name=name, policy=policy or str(DEFAULT_POLICY), sim_days=sim_days)
    doc = run_bench(opts, lambda line: click.echo(line, err=True))
    text = json.dumps(doc, indent=2, sort_keys=True) if as_json else render(doc)
    click.echo(text)
    if out_file:
        with open(out_file, "w") as f:
            f.write(text + "\n")
