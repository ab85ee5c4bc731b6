"""The start-up check of charon's strongswan.conf (charon.prefer_best_path and friends)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mobikectl.adapters.charon_conf import check_charon_settings, parse, problems
from mobikectl.errors import EX_DATAERR, DataError

LAB_CONF = Path(__file__).parents[2] / "mobikectl" / "lab" / "configs" / "strongswan-rw-controller.conf"


def test_the_labs_controller_profile_passes():
    assert check_charon_settings(LAB_CONF) == []


def test_the_labs_stock_profile_cannot_be_steered():
    with pytest.raises(DataError) as err:
        check_charon_settings(LAB_CONF.with_name("strongswan-rw-stock.conf"))
    assert err.value.exit_code == EX_DATAERR
    assert str(err.value).startswith("charon.prefer_best_path is not enabled in ")
    assert "add `prefer_best_path = yes` to the charon section and run `swanctl --reload-settings`" in str(err.value)


def test_settings_from_included_files_and_nested_sections(tmp_path):
    (tmp_path / "strongswan.d").mkdir()
    (tmp_path / "strongswan.d" / "roam.conf").write_text("prefer_best_path = yes  # steer\n")
    (tmp_path / "strongswan.conf").write_text(
        "charon {\n  interfaces_use = wlan0,wwan0\n  include strongswan.d/*.conf\n"
        "  plugins {\n    kernel-netlink { roam_events = yes }\n  }\n}\n")
    settings = parse(tmp_path / "strongswan.conf")
    assert settings["charon.prefer_best_path"] == "yes"
    assert settings["charon.plugins.kernel-netlink.roam_events"] == "yes"
    assert problems(tmp_path / "strongswan.conf") == ([], [])


def test_every_error_is_listed_and_interfaces_use_is_advised(tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("charon {\n  prefer_best_path = no\n  plugins {\n    kernel-netlink {\n"
                    "      roam_events = no\n    }\n  }\n}\n")
    errors, warnings = problems(conf)
    assert len(errors) == 2 and "roam_events" in errors[1]
    assert warnings and "interfaces_use" in warnings[0]
    with pytest.raises(DataError) as err:
        check_charon_settings(conf)
    assert len(err.value.problems) == 2


def test_charon_systemd_section_counts(tmp_path):
    conf = tmp_path / "s.conf"
    conf.write_text("charon-systemd {\n  prefer_best_path = yes\n  interfaces_use = eth0\n}\n")
    assert check_charon_settings(conf) == []


def test_a_missing_file_says_to_set_strongswan_conf(tmp_path):
    with pytest.raises(DataError, match="set STRONGSWAN_CONF"):
        check_charon_settings(tmp_path / "nope.conf")
