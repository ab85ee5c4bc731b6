"""Namespace tests: real kernel, real charons (root). Fixtures come from the lab itself."""

from mobikectl.lab.fixtures import *  # noqa: F401,F403  (lab, mobike_lab, lab_factory, udp_echo, ...)
from controller import *  # noqa: F401,F403,E402  (ctl_policy, controller: tests/netns/controller.py)
