"""One controller per charon: the second daemon on the same VICI socket is refused (69)."""

import os

import pytest

from mobikectl.compose import claim_charon
from mobikectl.errors import Unavailable


def test_second_claim_on_the_same_charon_is_refused(tmp_path):
    fd = claim_charon("unix:///tmp/some/charon.vici", str(tmp_path))
    try:
        with pytest.raises(Unavailable, match=rf"pid {os.getpid()}\) already manages charon at /tmp/some/charon.vici"):
            claim_charon("/tmp/some/charon.vici", str(tmp_path))  # same socket, other spelling
        other = claim_charon("/tmp/other/charon.vici", str(tmp_path))  # another charon: fine
        os.close(other)
    finally:
        os.close(fd)
    os.close(claim_charon("/tmp/some/charon.vici", str(tmp_path)))  # released with its fd
