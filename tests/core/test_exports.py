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


def test_import_core_imports_no_kernel_until_a_switched_name_is_used():
    probe = ("import sys, core; core.Pipeline, core.THRESHOLDS, core.KEY_DTYPE, core.Bindings, core.empty_batch; "
             "assert not {'numba', 'core.compiled', 'core.reference'} & set(sys.modules); "
             "assert core.bind is core.implementation.bind")
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_a_kernel_module_imported_first_does_not_hide_its_function():
    probe = ("import core.compiled, core.reference, core.bind, core.validate, core; "
             "assert core.bind is core.implementation.bind and core.validate is core.implementation.validate")
    subprocess.run([sys.executable, "-c", probe], check=True)
