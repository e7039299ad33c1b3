"""MISSED and DEVICE sweeps of gateways sharing one store (``Ingest(shared=True)``): each
sweep saves what its gateway heard and takes the latest times all of them saved."""

import msgpack
import pytest

from adapters.mqtt import Received
from gateway.clock import now_ms
from gateway.ingest import DAY_MS, Ingest
from gateway.store import Store

NOW = now_ms()
SILENT_AT = 7 * DAY_MS


@pytest.fixture
def store(db):
    with Store.open(db) as opened:
        opened.add_patient("P1", programmes=("AH",), tz="UTC", now_ms=NOW - 30 * DAY_MS)
        opened.add_device("tono-1", "bp")
        opened.bind("tono-1", "P1", 0)
        yield opened


def feed(ingest, seq, t, at):
    reading = {"seq": seq, "t": t, "type": "bp", "sys": 120, "dia": 80}
    return ingest.process([Received("pmp/v1/dev/tono-1/m", msgpack.packb([reading]), 1, 1, 1, at)], at)


def test_a_gateway_that_heard_nothing_sweeps_with_what_another_heard(store):
    gw1, gw2 = Ingest(store, shared=True), Ingest(store, shared=True)
    feed(gw1, 0, NOW - DAY_MS, NOW)
    gw1.sweep(NOW)
    assert gw2.sweep(NOW + 1_000) == []  # on its own: MISSED and DEVICE (silent), it heard nothing
    assert gw2.activity.last_valid[0, 0] == NOW - DAY_MS and gw2.activity.last_rx[0] == NOW


def test_the_latest_reading_counts_whichever_gateway_stored_it(store):
    gw1, gw2 = Ingest(store, shared=True), Ingest(store, shared=True)
    feed(gw1, 0, NOW - 4 * DAY_MS, NOW)  # overdue for gw1 alone (plan: every 3 days)
    feed(gw2, 1, NOW - DAY_MS, NOW)
    assert gw2.sweep(NOW) == []  # saves its times
    assert gw1.sweep(NOW + 1_000) == []
    assert gw2.sweep(NOW + 2_000) == []  # gw1's older times leave the store's later ones
    assert gw1.activity.last_valid[0, 0] == gw2.activity.last_valid[0, 0] == NOW - DAY_MS


def test_a_task_both_gateways_find_is_raised_once(store):
    gw1, gw2 = Ingest(store, shared=True), Ingest(store, shared=True)
    feed(gw1, 0, NOW - DAY_MS, NOW)
    later = NOW + SILENT_AT + 1
    raised = gw1.sweep(later) + gw2.sweep(later + 1_000)
    assert len(raised) == 2  # MISSED and DEVICE (silent), by gw1; gw2 finds them open
    assert sorted((a["rule"], a["state"]) for a in store.alerts()) == [("DEVICE", "open"), ("MISSED", "open")]
    (device,) = [a for a in store.alerts() if a["rule"] == "DEVICE"]
    assert device["values"]["devices"] == {"tono-1": ["silent"]}
