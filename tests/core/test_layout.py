"""The numpy layout and the code tables agree with include/pmp.h."""

import numpy as np
import pytest

import core
from core import _gatt_c, codes, layout


def test_reading_dtype_matches_c_struct():
    assert core.READING_DTYPE.itemsize == _gatt_c.ffi.sizeof("struct pmp_reading") == 88
    for name, c_field in _gatt_c.ffi.typeof("struct pmp_reading").fields:
        assert core.READING_DTYPE.fields[name][1] == c_field.offset


def test_check_detects_a_drifted_dtype():
    drifted = np.dtype([(n, f, s) for n, f, s in layout.READING_FIELDS if n != "user"] + [("user", "u1")], align=True)
    with pytest.raises(layout.LayoutMismatch, match="fields"):
        layout._check_struct(_gatt_c.ffi, "struct pmp_reading", drifted)


def test_every_code_table_matches_the_header():
    layout.check_against_c(_gatt_c.ffi, _gatt_c.lib)
    assert _gatt_c.lib.PMP_R_CONFLICT == codes.Reason.CONFLICT


def test_empty_batch_marks_everything_absent():
    batch = core.empty_batch(3)
    assert np.isnan(batch["v"]).all()
    assert (batch["patient"] == codes.NO_PATIENT).all()
    assert (batch["user"] == codes.NO_USER).all()
    assert (batch["reason"] == core.Reason.OK).all()
