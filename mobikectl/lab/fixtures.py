"""pytest fixtures for the lab (import them from a conftest: `from mobikectl.lab.fixtures import *`).

    lab_env        skips the test (with the reason) unless root, ip/nft/ping and charon with
                   kernel-libipsec are there
    lab            module-scoped lab `t<pid>m<n>`: profile controller, all three uplinks;
                   torn down even when tests fail
    mobike_lab     module-scoped lab with wlan0 + wwan0 only (charon's own MOBIKE move)
    lab_factory    function-scoped: lab_factory(uplinks=..., profile=...) -> a fresh Lab,
                   every one torn down at the end of the test
    udp_echo       a UDP echo server (reports the sender's IP:PORT) in gw of `lab`
    clear_impairments (autouse) clears the impairments of `lab` / `mobike_lab` after each test
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time

import pytest

from mobikectl.lab import topology as t

__all__ = ["lab_env", "lab", "mobike_lab", "lab_factory", "udp_echo", "clear_impairments", "unique_lab_name"]

_counter = itertools.count(1)
UDP_ECHO_PORT = 5555


def unique_lab_name() -> str:
    return f"t{os.getpid()}m{next(_counter)}"


def _missing() -> str | None:
    from mobikectl.lab.charon import CHARON, LIBIPSEC_PLUGIN

    if os.geteuid() != 0:
        return "needs root (network namespaces and charon)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("ping", "iputils-ping"),
                          ("swanctl", "strongswan-swanctl")):
        if not shutil.which(tool):
            return f"{tool} missing (apt-get install {package})"
    if not os.access(CHARON, os.X_OK):
        return f"{CHARON} missing (apt-get install strongswan-charon)"
    if not os.path.exists(LIBIPSEC_PLUGIN):
        return "charon's kernel-libipsec plugin missing (apt-get install libcharon-extra-plugins)"
    return None


@pytest.fixture(scope="session")
def lab_env() -> None:
    reason = _missing()
    if reason:
        pytest.skip(f"lab not available: {reason}")


def _make(uplinks=None, profile="controller"):
    from mobikectl.lab.api import Lab

    lab_ = Lab(unique_lab_name())
    try:
        lab_.up(uplinks=uplinks, profile=profile)
    except BaseException:
        lab_.down()
        raise
    return lab_


@pytest.fixture(scope="module")
def lab(lab_env):
    lab_ = _make()
    try:
        yield lab_
    finally:
        lab_.down()


@pytest.fixture(scope="module")
def mobike_lab(lab_env):
    lab_ = _make(uplinks=["wlan0", "wwan0"])
    try:
        yield lab_
    finally:
        lab_.down()


@pytest.fixture
def lab_factory(lab_env):
    made = []

    def make(uplinks=None, profile="controller"):
        lab_ = _make(uplinks=uplinks, profile=profile)
        made.append(lab_)
        return lab_

    try:
        yield make
    finally:
        for lab_ in made:
            lab_.down()


@pytest.fixture(autouse=True)
def clear_impairments(request):
    yield
    for name in ("lab", "mobike_lab"):
        if name in request.fixturenames:
            lab_ = request.getfixturevalue(name)
            if lab_.state is not None:
                lab_.clear()


@pytest.fixture
def udp_echo(lab):
    proc = lab.popen(t.GW, [sys.executable, "-m", "mobikectl.lab.udpecho", "serve", "--port", str(UDP_ECHO_PORT)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    if line.strip() != "ready":
        proc.kill()
        pytest.fail(f"udp echo did not start: {line}")

    def ask(uplink: str, sport: int = 0, host: str = t.GW_ADDR) -> str | None:
        argv = [sys.executable, "-m", "mobikectl.lab.udpecho", "ask", "--dev", uplink, "--sport", str(sport),
                "--timeout", "0.4", "--tries", "2", host, str(UDP_ECHO_PORT)]
        done = lab.exec(t.RW, argv, capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or None

    try:
        yield ask
    finally:
        proc.kill()
        proc.wait()


def poll(condition, timeout: float = 5.0, interval: float = 0.02):
    """Poll `condition()` until truthy or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
