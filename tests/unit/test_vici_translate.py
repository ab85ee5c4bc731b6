"""vici_translate from events and listings recorded off charon 5.9.8 (tests/unit/recorded/vici)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from recorded.messages import vici_doc, vici_event

from mobikectl.adapters import vici_translate as vt
from mobikectl.engine.inputs import ChildRekeyed, IkeDown, IkeRekeyed, IkeUp, IkeUpdated
from mobikectl.errors import DataError


def test_ike_up_is_an_sa_on_the_first_uplink_with_its_virtual_ip():
    fact = vt.translate(*vici_event("ike-updown-up"))
    assert isinstance(fact, IkeUp)
    sa = fact.sa
    assert (sa.name, sa.state, sa.local_host, sa.local_port, sa.remote_host) == (
        "home", "ESTABLISHED", "10.1.0.2", 4500, "203.0.113.10")
    assert sa.vips == ("10.99.0.1",)
    assert len(sa.spi_i) == 16 and len(sa.spi_r) == 16


def test_ike_down_names_the_sa_by_its_spis():
    fact = vt.translate(*vici_event("ike-updown-down"))
    up_then_rekeyed = vt.translate(*vici_event("ike-rekey"))
    assert fact == IkeDown("home", *up_then_rekeyed.new.spis)


@pytest.mark.parametrize("recording, old, new", [
    ("ike-update-link-down", "10.1.0.2", "10.2.0.2"),   # charon's own move: wlan0 admin down
    ("ike-update-failback", "10.2.0.2", "10.1.0.2"),    # prefer_best_path back to the better default
    ("ike-update-steered", "10.1.0.2", "10.2.0.2"),     # our proto-73 route via wwan0
])
def test_ike_update_takes_new_endpoints_from_the_top_and_old_ones_from_the_sa(recording, old, new):
    event, msg = vici_event(recording)
    assert "up" not in msg and msg["local-host"] == new.encode()  # bytes, as vici yields them
    fact = vt.translate(event, msg)
    assert isinstance(fact, IkeUpdated)
    assert (fact.name, fact.old_local, fact.new_local) == ("home", old, new)
    assert (fact.old_remote, fact.new_remote, fact.new_local_port, fact.new_remote_port) == (
        "203.0.113.10", "203.0.113.10", 4500, 4500)


def test_ike_update_keeps_the_spis_so_the_engine_compares_by_spi():
    up = vt.translate(*vici_event("ike-updown-up"))
    moved = vt.translate(*vici_event("ike-update-link-down"))
    assert (moved.spi_i, moved.spi_r) == up.sa.spis


def test_ike_rekey_gives_old_spis_and_the_new_sa():
    fact = vt.translate(*vici_event("ike-rekey"))
    assert isinstance(fact, IkeRekeyed)
    moved = vt.translate(*vici_event("ike-update-steered"))
    assert fact.old_spis == (moved.spi_i, moved.spi_r)
    assert fact.new.spis != fact.old_spis
    assert fact.new.local_host == "10.2.0.2" and fact.new.uniqueid == "2"


@pytest.mark.parametrize("recording", ["child-rekey", "child-rekey-after-move"])
def test_child_rekey_gives_the_child_and_both_inbound_spis(recording):
    fact = vt.translate(*vici_event(recording))
    assert isinstance(fact, ChildRekeyed)
    assert (fact.name, fact.child) == ("home", "net")
    assert fact.old_spi_in and fact.new_spi_in and fact.old_spi_in != fact.new_spi_in


def test_child_rekey_after_a_move_belongs_to_the_moved_sa():
    moved = vt.translate(*vici_event("ike-update-link-down"))
    rekeyed = vt.translate(*vici_event("child-rekey-after-move"))
    assert (rekeyed.spi_i, rekeyed.spi_r) == (moved.spi_i, moved.spi_r)


@pytest.mark.parametrize("recording, up", [("child-updown-up", True), ("child-updown-down", False)])
def test_child_updown_is_no_fact_but_can_be_read(recording, up):
    event, msg = vici_event(recording)
    assert vt.translate(event, msg) is None
    is_up, sa = vt.child_updown(msg)
    assert is_up is up
    assert [c.name for c in sa.children] == ["net"]


def test_list_sas_snapshot_with_children_and_connections():
    doc = vici_doc("list-sas")
    snap = vt.snapshot([vt_in(e) for e in doc["events"]], [vt_in(c) for c in doc["conns"]],
                       total=vt.ikesas_total(vt_in(doc["stats"])))
    assert snap.complete and snap.conns == ("home",)
    (sa,) = snap.sas
    assert sa.local_host == "10.1.0.2" and sa.busy == ()
    (child,) = sa.children
    assert (child.name, child.state) == ("net", "INSTALLED") and child.spi_in and child.spi_out
    assert vt.conn_children([vt_in(c) for c in doc["conns"]], "home") == ("net",)


def test_a_listing_shorter_than_charons_count_is_incomplete():
    doc = vici_doc("list-sas")
    assert not vt.snapshot([vt_in(e) for e in doc["events"]], total=2).complete
    assert not vt.snapshot([], total=1).complete


def test_list_sas_after_the_steered_move_shows_the_new_local_host():
    doc = vici_doc("list-sas-after-move")
    (sa,) = vt.snapshot([vt_in(e) for e in doc["events"]]).sas
    assert sa.local_host == "10.2.0.2"


def test_version_line():
    assert vt.version(vt_in(vici_doc("version")["message"])).startswith("charon 5.9.8 (Linux ")


def test_unknown_events_are_ignored_and_malformed_ones_are_data_errors():
    assert vt.translate(b"log", OrderedDict(msg=b"x")) is None
    with pytest.raises(DataError):
        vt.translate("ike-updown", OrderedDict(up=b"yes"))
    with pytest.raises(DataError):
        vt.translate("ike-rekey", OrderedDict(home=OrderedDict(state=b"x")))


def vt_in(doc):
    from recorded.messages import as_vici

    return as_vici(doc)
