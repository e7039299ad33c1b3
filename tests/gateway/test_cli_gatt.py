"""``pmpgw gatt decode``: one JSON object on stdout, exit 0 decoded / 2 not decoded."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from core.codes import GATT_ERRORS, GattError
from gateway.cli import main
from tests.core.gatt_values import bpm, cgm, context, date_time, glucose, sf, u16

PMPGW = pathlib.Path(sys.executable).parent / "pmpgw"


def run(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["gatt", "decode", *argv])
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return code, json.loads(out)


def readings(capsys, uuid: str, value: bytes, *extra: str) -> list[dict]:
    code, doc = run(capsys, "--uuid", uuid, "--hex", value.hex(), *extra)
    assert (code, doc["ok"]) == (0, True)
    return doc["readings"]


def test_blood_pressure(capsys):
    value = bpm(time=date_time(2020, 3, 15, 8, 30), pulse=sf(72), user=2, status=0x0001)
    assert readings(capsys, "0x2A35", value, "--tz", "180") == [{
        "type": "bp", "sys": 121.0, "dia": 80.0, "map": 93.0, "pul": 72.0, "t": 1584250200000,
        "u_in": "mmHg", "user": 2, "st": 1,
    }]


def test_blood_pressure_kpa_without_optional_fields(capsys):
    [reading] = readings(capsys, "2a35", bpm(sf(160, -1), sf(107, -1), u16(0x07FF), kpa=True))
    assert reading["sys"] == 16.0 * 7.50062
    assert (reading["map"], reading["pul"], reading["t"], reading["user"], reading["u_in"]) == (
        None, None, None, None, "kPa")


def test_glucose_lo_meter(capsys):
    value = glucose(seq=12, offset=-5, concentration=u16(0x0802), sample_type=2, location=1, status=0,
                    context_follows=True)
    assert readings(capsys, "0x2A18", value) == [{
        "type": "glu", "seq": 12, "t": 1709192710000 - 5 * 60_000, "glu": None, "u_in": "kg/L",
        "sample_type": 2, "location": 1, "sensor_status": 0, "context_follows": True, "range": "LO",
    }]


def test_glucose_mol_per_l_unknown_time_and_hi_status(capsys):
    [reading] = readings(capsys, "0x2A18", glucose(base_time=date_time(0, 0, 0), concentration=sf(55, -4),
                                                   mol=True, status=0x0020))
    assert (reading["t"], reading["glu"], reading["u_in"], reading["range"]) == (None, 5.5, "mol/L", "HI")


def test_glucose_context(capsys):
    value = context(seq=12, carbohydrate=(1, sf(60, -3)), meal=1, tester=1, health=5, exercise=(1800, 40),
                    medication=(4, sf(10, -6)), hba1c=sf(68, -1))
    assert readings(capsys, "0x2A34", value) == [{
        "type": "glu_context", "seq": 12, "carbohydrate_id": 1, "carbohydrate_kg": 0.06, "meal": 1,
        "tester": 1, "health": 5, "exercise_duration_s": 1800, "exercise_intensity_pct": 40,
        "medication_id": 4, "medication": 1e-05, "medication_unit": "kg", "hba1c_pct": 6.8,
    }]


def test_glucose_context_absent_fields_are_null(capsys):
    [reading] = readings(capsys, "0x2A34", context(seq=1))
    assert {k for k, v in reading.items() if v is not None} == {"type", "seq"}


def test_cgm_several_records(capsys):
    value = cgm(sf(90), 5) + cgm(sf(54), 10, warning=0x40, trend=sf(-36, -1), quality=sf(90), crc=True)
    assert readings(capsys, "0x2AA7", value, "--cgm-start", "1700000000000") == [
        {"type": "cgm", "glu": 90 / 18.016, "offset_min": 5, "t": 1700000300000, "trend": None, "quality": None,
         "range": None},
        {"type": "cgm", "glu": 54 / 18.016, "offset_min": 10, "t": 1700000600000, "trend": -3.6 / 18.016,
         "quality": 90.0, "range": "LO"},
    ]


def test_cgm_without_session_start_has_no_time(capsys):
    [reading] = readings(capsys, "0x2AA7", cgm())
    assert reading["t"] is None


@pytest.mark.parametrize(("uuid", "value", "error"), [
    ("0x2A35", bpm()[:-1], GattError.TRUNCATED),
    ("0x2A35", b"", GattError.EMPTY),
    ("0x2A35", bpm(time=date_time(2021, 2, 29)), GattError.DATE),
    ("0x2AA7", cgm()[:-1] + b"\x00" * 5, GattError.CGM_SIZE),
    ("0x2AA7", cgm(crc=True)[:-1] + b"\x00", GattError.CGM_CRC),
    ("0x2A19", b"\x64", GattError.UUID),
])
def test_undecodable_values(capsys, uuid, value, error):
    code, doc = run(capsys, "--uuid", uuid, "--hex", value.hex())
    reason, text = GATT_ERRORS[error]
    assert (code, doc["ok"], doc["reason"]) == (2, False, reason.name)
    assert text in doc["detail"] and repr(value.hex()) in doc["detail"]


@pytest.mark.parametrize(("argv", "reason", "fragment"), [
    (["--uuid", "0x2A35", "--hex", "1e7"], "DECODE", "--hex"),
    (["--uuid", "0x2A35", "--hex", "zz"], "DECODE", "'zz'"),
    (["--uuid", "blood", "--hex", "00"], "SCHEMA", "'blood'"),
    (["--uuid", "0x12A35", "--hex", "00"], "SCHEMA", "--uuid"),
    (["--uuid", "", "--hex", "00"], "SCHEMA", "--uuid"),
    (["--uuid", "0x2A35", "--hex", "00", "--tz", "40000"], "SCHEMA", "--tz"),
    (["--uuid", "0x2AA7", "--hex", "00", "--cgm-start", str(2**63)], "SCHEMA", "--cgm-start"),
])
def test_bad_arguments(capsys, argv, reason, fragment):
    code, doc = run(capsys, *argv)
    assert (code, doc["ok"], doc["reason"]) == (2, False, reason)
    assert fragment in doc["detail"]


def test_hex_separators_are_allowed(capsys):
    spaced = " ".join(f"{octet:02X}" for octet in bpm())
    code, doc = run(capsys, "--uuid", "0x2A35", "--hex", spaced)
    assert (code, doc["readings"][0]["sys"]) == (0, 121.0)


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["gatt", "decode", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for fragment in ("--uuid", "--hex", "--tz", "--cgm-start", "0x2AA7", "exit status"):
        assert fragment in text


@pytest.mark.parametrize("pure", ["0", "1"])
def test_installed_command_on_both_implementations(pure):
    value = glucose(concentration=sf(100, -5), status=0x0800).hex()
    done = subprocess.run([str(PMPGW), "gatt", "decode", "--uuid", "0x2A18", "--hex", value], capture_output=True,
                          text=True, env=dict(os.environ, PMP_PUREPYTHON=pure), check=False)
    assert done.returncode == 0, done.stderr
    [reading] = json.loads(done.stdout)["readings"]
    assert (reading["glu"], reading["sensor_status"]) == ((100e-5 * 100000.0) / 18.016, 0x0800)
