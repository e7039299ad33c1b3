"""gateway.patients_csv: patient CSV text -> rows and row errors with line numbers (pure)."""

import pytest

from gateway.patients_csv import (
    FieldError,
    parse,
    parse_bp_target,
    parse_flag,
    parse_glucose_range,
    parse_plan,
    parse_programmes,
    targets_of,
)


def errors_of(text):
    return [(e.line, e.reason, e.value) for e in parse(text).errors]


def test_a_good_file_with_defaults_for_empty_cells():
    parsed = parse("id,programmes,dispensary,tz,physician,nurse,personal_admin,bp_target,glucose_range,plan\n"
                   "P1,AH|DM2,no,Asia/Omsk,doc,nur,pa,130/80,4-9,bp=1|glu=2\n"
                   "P2,,,,,,,,,\n")
    assert parsed.errors == []
    (first, second) = parsed.rows
    assert (first.line, second.line) == (2, 3)
    assert first.patient == {"id": "P1", "programmes": ("AH", "DM2"), "dispensary": False, "tz": "Asia/Omsk",
                             "physician": "doc", "nurse": "nur", "personal_admin": "pa",
                             "targets": {"home_sys": 130, "home_dia": 80, "tir_low": 4, "tir_high": 9,
                                         "plan": {"bp": 1, "glu": 2}}}
    assert second.patient == {"id": "P2", "programmes": ("AH",), "dispensary": True, "tz": "Europe/Moscow",
                              "physician": None, "nurse": None, "personal_admin": None, "targets": {}}


def test_only_id_is_required_columns_in_any_order_and_case():
    parsed = parse("\ufeffTZ, Id\nUTC,P1\n\n,P2\nUTC\n")  # BOM, blank line, short rows
    assert [(r.line, r.patient["id"], r.patient["tz"]) for r in parsed.rows] == [(2, "P1", "UTC"),
                                                                                (4, "P2", "Europe/Moscow")]
    assert errors_of("TZ, Id\nUTC,P1\n\n,P2\nUTC\n") == [(5, "INVALID", "")]  # the id is empty


def test_semicolon_separated_file():
    parsed = parse("id;programmes;glucose_range\nP1;DM1|DM2;3.9-10\n")
    assert parsed.errors == []
    assert parsed.rows[0].patient["programmes"] == ("DM1", "DM2")
    assert parsed.rows[0].patient["targets"] == {"tir_low": 3.9, "tir_high": 10}


@pytest.mark.parametrize("header, value", [("programmes,tz", "programmes,tz"), ("id,colour", "colour"),
                                           ("id,tz,TZ", "tz"), ("", "")])
def test_header_problems_stop_the_file_at_line_1(header, value):
    parsed = parse(header + "\nP1,UTC\n")
    assert parsed.rows == [] and [(e.line, e.reason, e.value) for e in parsed.errors] == [(1, "COLUMNS", value)]


def test_empty_file():
    assert errors_of("") == [(1, "COLUMNS", "")]


def test_every_bad_row_is_reported_with_its_line_and_the_good_ones_are_kept():
    text = ("id,dispensary,bp_target,glucose_range,plan\n"
            "P1,yes,130/80,,\n"          # 2 good
            "P2,maybe,,,\n"              # 3 dispensary
            "P3,,130-80,,\n"             # 4 BP target syntax
            "P4,,80/130,,\n"             # 5 systolic below diastolic
            "P5,,300/80,,\n"             # 6 implausible
            "P6,,,10-4,\n"               # 7 range reversed
            "P7,,,,bp:1\n"               # 8 plan syntax
            "P1,,,,\n"                   # 9 duplicate of line 2
            "P8,,,,,,\n"                 # 10 more cells than columns
            "P9,,,,bp=1|bp=2\n"          # 11 metric twice
            "P10,,,abc-9,\n")            # 12 not a number
    parsed = parse(text)
    assert [r.patient["id"] for r in parsed.rows] == ["P1"]
    assert [(e.line, e.reason, e.value) for e in parsed.errors] == [
        (3, "INVALID", "maybe"), (4, "INVALID", "130-80"), (5, "INVALID", "80/130"), (6, "INVALID", "300/80"),
        (7, "INVALID", "10-4"), (8, "INVALID", "bp:1"), (9, "DUPLICATE", "P1"), (10, "FIELDS", "P8,,,,,,"),
        (11, "INVALID", "bp=1|bp=2"), (12, "INVALID", "abc-9")]
    assert "already on line 2" in parsed.errors[6].message


def test_a_quoted_cell_over_two_lines_keeps_the_line_numbers_of_the_rows_after_it():
    parsed = parse('id,nurse\nP1,"two\nlines"\nP2,ok\nP2,again\n')
    assert [r.line for r in parsed.rows] == [2, 4]
    assert errors_of('id,nurse\nP1,"two\nlines"\nP2,ok\nP2,again\n') == [(5, "DUPLICATE", "P2")]


def test_a_stray_quote_spoils_its_row_only_and_an_unclosed_one_the_rest():
    assert errors_of('id,nurse\nP1,"a"b\nP2,x\nP3,"open\nP4,y\n') == [(2, "FIELDS", ""), (4, "FIELDS", "")]
    assert [r.patient["id"] for r in parse('id,nurse\nP1,"a"b\nP2,x\n').rows] == ["P2"]


def test_rows_with_the_same_cells_do_not_share_their_targets():
    rows = parse("id,bp_target,plan\nA,130/80,bp=1\nB,130/80,bp=1\n").rows
    rows[0].patient["targets"]["home_sys"] = 125
    assert rows[1].patient["targets"]["home_sys"] == 130


def test_field_parsers():
    assert parse_programmes("ah, dm2", ",") == ("AH", "DM2")
    with pytest.raises(FieldError, match="empty item"):
        parse_programmes("AH,,DM2", ",")
    assert parse_flag(" Y ") is True and parse_flag("0") is False
    assert parse_bp_target("125 / 75.5") == {"home_sys": 125, "home_dia": 75.5}
    with pytest.raises(FieldError, match="not a finite number") as info:
        parse_bp_target("nan/80")
    assert info.value.value == "nan/80"
    assert parse_glucose_range("4.4-7.8") == {"tir_low": 4.4, "tir_high": 7.8}
    with pytest.raises(FieldError, match="plausible"):
        parse_glucose_range("1-9")
    assert parse_plan("BP=1, cgm=0.5", ",") == {"bp": 1, "cgm": 0.5}
    with pytest.raises(FieldError, match="metric=days"):
        parse_plan("=1", ",")
    assert targets_of(None, "", None, ",") == {}
    assert targets_of("130/80", None, "glu=3", ",") == {"home_sys": 130, "home_dia": 80, "plan": {"glu": 3}}
