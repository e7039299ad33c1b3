"""bench.e2e_ingest on a tiny stream: a real private Mosquitto, mosquitto_sub, publisher
processes and a `pmpgw run` process; the figures' shape and that every reading was stored
(no timing assertions)."""

import math

import msgpack

from bench.e2e_ingest import GATEWAY_REPEAT, Sizes, measure, results
from bench.publishers import publish_packet, stream

TINY = Sizes(devices=3, batched_messages=4, single_messages=20, samples=5, ceiling_batched_messages=4,
             ceiling_single_messages=20)


def test_tiny_run_stores_every_published_reading_and_reports_four_figures(tmp_path):
    measured = measure(TINY, tmp_path, timeout_s=60.0)
    background = measured.publishers["bg"]["messages"] * 50
    assert measured.stored == measured.expected == GATEWAY_REPEAT * (3 * 4 * 50 + 3 * 20) + background + 5 + 1
    figures = results(TINY, measured)
    assert [f.name for f in figures] == ["e2e.ingest_batched", "e2e.ingest_single", "e2e.alert_latency.p50",
                                         "e2e.alert_latency.p99"]
    assert [f.unit for f in figures] == ["readings/s", "readings/s", "ms", "ms"]
    for figure in figures:
        assert figure.value > 0 and figure.baseline_value > 0 and math.isfinite(figure.ratio)
        assert "bench.publishers" in figure.note and "stored" in figure.note
    assert figures[2].value <= figures[3].value
    assert len(measured.alert_ms) == len(measured.raw_ms) == 5
    assert measured.rss_mib["peak"] >= measured.rss_mib["warm-up"] > 0


def test_publisher_stream_interleaves_devices_with_ordered_seqs_and_encodes_qos1():
    spec = {"devices": ["a", "b"], "messages_per_device": 2, "per_message": 3, "t0_ms": 0}
    messages = stream(spec)
    assert [t for t, _ in messages] == ["pmp/v1/dev/a/m", "pmp/v1/dev/b/m"] * 2
    assert [[r["seq"] for r in msgpack.unpackb(p)] for _, p in messages] == [[0, 1, 2], [0, 1, 2], [3, 4, 5],
                                                                             [3, 4, 5]]
    packet = publish_packet("pmp/v1/dev/a/m", b"xyz", 7)
    assert packet[0] == 0x32 and packet[1] == len(packet) - 2 and packet.endswith(b"\x00\x07xyz")
