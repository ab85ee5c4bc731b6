"""`mobikectl run`: the controller daemon, in the foreground (a service manager runs it)."""

from __future__ import annotations

import logging
import os

import click

from mobikectl.errors import NotRoot
from mobikectl.settings import CharonSettings, ControlSettings, Settings

log = logging.getLogger("mobikectl.run")


@click.command("run")
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), envvar="MOBIKECTL_POLICY",
              help="Policy file (TOML). Default: the built-in default policy (policies/default.toml).")
@click.option("--vici", "vici_socket", envvar="MOBIKECTL_VICI", default=None,
              help="charon's VICI socket.  [default: /var/run/charon.vici, or $MOBIKECTL_VICI]")
@click.option("--strongswan-conf", envvar="STRONGSWAN_CONF", default="/etc/strongswan.conf", show_default=True,
              help="charon's strongswan.conf, checked at start for the settings the controller needs.")
@click.option("--socket", "control_socket", envvar="MOBIKECTL_SOCKET", default=None,
              help="Control socket to serve.  [default: /run/mobikectl/mobikectl.sock, or $MOBIKECTL_SOCKET]")
@click.option("--group", "read_group", default="mobikectl", show_default=True,
              help="Members of this group may read status and events; only root may change things.")
@click.option("--record", "record_file", type=click.Path(dir_okay=False), default=None,
              help="Record every fact (JSON lines) for `mobikectl policy simulate`.")
@click.option("--on-exit", type=click.Choice(["keep", "remove"]), default="keep", show_default=True,
              help="What happens to the steering route on stop. keep: the SA stays where it is and a "
                   "restarted controller adopts it. remove: charon follows the plain routing metrics "
                   "again (which may point at a dead uplink).")
@click.option("--charon-wait", type=float, default=10.0, show_default=True,
              help="Seconds to wait for charon's VICI socket at start before giving up (exit 69).")
def run(policy_file, vici_socket, strongswan_conf, control_socket, read_group, record_file, on_exit, charon_wait):
    """Run the controller: probe the uplinks, keep charon's SA on the best working one.

    Needs root (it installs routes and opens raw sockets). Stops on SIGTERM or Ctrl-C;
    SIGHUP reloads the policy file (all or nothing).
    """
    if os.geteuid() != 0:
        raise NotRoot("mobikectl run")
    from mobikectl.compose import build_daemon
    from mobikectl.daemon import install_signal_handlers

    charon = CharonSettings(vici_socket=vici_socket) if vici_socket else CharonSettings()
    charon = CharonSettings(vici_socket=charon.vici_socket, strongswan_conf=strongswan_conf)
    control = ControlSettings(socket=control_socket, read_group=read_group) if control_socket else \
        ControlSettings(read_group=read_group)
    settings = Settings(charon=charon, control=control, policy_file=policy_file, record_file=record_file)
    daemon = build_daemon(settings, keep_routes_on_exit=(on_exit == "keep"), charon_wait=charon_wait)
    install_signal_handlers(daemon)
    daemon.run()


commands = [run]
