"""One public face: compiled and reference offer the same names; PMP_PUREPYTHON picks one."""

import subprocess
import sys

import core
import core.compiled
import core.reference

SWITCHED = ["bind", "DedupTable", "fingerprint_readings", "gatt_decode", "gatt_decode_batch", "reading_alerts",
            "validate", "WindowState"]


def public(module):
    return sorted(name for name in vars(module) if not name.startswith("_") and name not in {"annotations"})


def test_compiled_and_reference_offer_the_same_names():
    assert set(SWITCHED) <= set(public(core.compiled))
    assert [n for n in public(core.compiled) if n in SWITCHED] == [n for n in public(core.reference) if n in SWITCHED]


def test_core_uses_the_compiled_implementation_by_default():
    assert not core.PUREPYTHON
    for name in SWITCHED:
        assert getattr(core, name) is getattr(core.compiled, name)


def test_purepython_switch_selects_the_twins():
    probe = ("import core, core.reference; "
             f"assert core.PUREPYTHON and all(getattr(core, n) is getattr(core.reference, n) for n in {SWITCHED!r})")
    subprocess.run([sys.executable, "-c", probe], env={"PMP_PUREPYTHON": "1", "PATH": ""}, check=True)
