"""gateway.devices_csv: device CSV text -> rows and row errors with line numbers (pure)."""

import pytest

from gateway.devices_csv import parse

HEADER = "id,kind,patient,from,to,user\n"


def errors_of(text):
    return [(e.line, e.reason, e.value) for e in parse(text).errors]


def test_a_good_file_with_defaults_for_empty_cells():
    parsed = parse(HEADER +
                   "tono-1,bp,P1,2026-11-01T00:00,2026-12-01T03:00+03:00,\n"  # ISO, an offset
                   "AA:BB:CC:DD:EE:FF,GLU,P2,1767225600000,,2\n"             # ms, a user slot, kind in any case
                   "hub-1,hub,,,,\n"                                        # registered, not bound
                   "cgm-1,cgm,P3\n")                                         # short row: from the beginning, open
    assert parsed.errors == []
    assert [(r.line, r.device) for r in parsed.rows] == [
        (2, {"id": "tono-1", "kind": "bp", "patient": "P1", "from": 1_793_491_200_000, "to": 1_796_083_200_000,
             "user": None}),
        (3, {"id": "AA:BB:CC:DD:EE:FF", "kind": "glu", "patient": "P2", "from": 1_767_225_600_000, "to": None,
             "user": 2}),
        (4, {"id": "hub-1", "kind": "hub"}),
        (5, {"id": "cgm-1", "kind": "cgm", "patient": "P3", "from": 0, "to": None, "user": None})]


def test_columns_in_any_order_and_case_semicolons_and_a_bom():
    parsed = parse("\ufeffPatient;KIND;Id\nP1;bp;tono-1\n\n;hub;hub-1\n")
    assert parsed.errors == []
    assert [(r.line, r.device) for r in parsed.rows] == [
        (2, {"id": "tono-1", "kind": "bp", "patient": "P1", "from": 0, "to": None, "user": None}),
        (4, {"id": "hub-1", "kind": "hub"})]


@pytest.mark.parametrize("header, value", [("id,patient", "id,patient"), ("kind,patient", "kind,patient"),
                                           ("id,kind,colour", "colour"), ("id,kind,ID", "id"), ("", "")])
def test_header_problems_stop_the_file_at_line_1(header, value):
    parsed = parse(header + "\ntono-1,bp\n")
    assert parsed.rows == [] and [(e.line, e.reason, e.value) for e in parsed.errors] == [(1, "COLUMNS", value)]
    assert parse("id,patient\n").errors[0].message == "no 'kind' column"


def test_every_bad_row_is_reported_with_its_line_and_the_good_ones_are_kept():
    text = (HEADER +
            "tono-1,bp,P1,2026-11-01,2026-12-01,\n"  # 2 good
            ",bp,P1,,,\n"                          # 3 no id
            "tono-2,,P1,,,\n"                      # 4 no kind
            "tono-3,bp,P1,tomorrow,,\n"            # 5 from unreadable
            "tono-4,bp,P1,,1.5e3,\n"               # 6 to unreadable
            "tono-5,bp,P1,,,one\n"                 # 7 user not a number
            "tono-6,bp,P1,,,-1\n"                  # 8 user negative
            "tono-7,bp,,2026-11-01,,\n"            # 9 from without a patient
            "tono-8,bp,,,,1\n"                     # 10 user without a patient
            "tono-1,glu,P2,2026-12-01,,\n"         # 11 repeated with another kind
            "hub-1,hub,,,,\n"                      # 12 good
            "hub-1,hub,P2,,,\n"                    # 13 repeating a device that was not bound
            "tono-1,bp,,,,\n"                      # 14 repeated without a patient
            "tono-9,bp,P1,,,,\n"                   # 15 more cells than columns
            'tono-10,bp,"P"1,,,\n'                 # 16 stray quote
            "tono-1,bp,P2,2026-12-01,,\n")         # 17 good: tono-1's next binding
    parsed = parse(text)
    assert [(r.line, r.device["id"]) for r in parsed.rows] == [(2, "tono-1"), (12, "hub-1"), (17, "tono-1")]
    assert [(e.line, e.reason, e.value) for e in parsed.errors] == [
        (3, "INVALID", ""), (4, "INVALID", ""), (5, "INVALID", "tomorrow"), (6, "INVALID", "1.5e3"),
        (7, "INVALID", "one"), (8, "INVALID", "-1"), (9, "INVALID", "2026-11-01"), (10, "INVALID", "1"),
        (11, "DUPLICATE", "tono-1"), (13, "DUPLICATE", "hub-1"), (14, "DUPLICATE", "tono-1"),
        (15, "FIELDS", "tono-9,bp,P1,,,,"), (16, "FIELDS", "")]
    messages = {e.line: e.message for e in parsed.errors}
    assert messages[3] == "the id is empty" and messages[4] == "the kind is empty"
    assert messages[5] == "from 'tomorrow' is neither ISO 8601 (2026-11-25T08:00) nor ms since epoch"
    assert messages[7] == "user slot 'one' is not a whole number"
    assert messages[9] == "from '2026-11-01' without a patient: from, to and user are the binding's"
    assert messages[11] == "device 'tono-1' is already on line 2 as kind bp"
    assert messages[13] == (
        "device 'hub-1' is already on line 12: a device is on several lines only to be bound several times, "
        "each line with a patient")


def test_a_repeat_of_a_bad_row_is_a_duplicate_of_its_line():
    assert errors_of(HEADER + "tono-1,bp,P1,never,,\ntono-1,bp,,,,\n") == [(2, "INVALID", "never"),
                                                                      (3, "DUPLICATE", "tono-1")]


def test_a_quoted_cell_over_two_lines_keeps_the_line_numbers_of_the_rows_after_it():
    parsed = parse('id,kind,patient\ntono-1,bp,"P\n1"\ntono-2,bp,P2\ntono-2,bp,\n')
    assert [r.line for r in parsed.rows] == [2, 4]
    assert errors_of('id,kind,patient\ntono-1,bp,"P\n1"\ntono-2,bp,P2\ntono-2,bp,\n') == [(5, "DUPLICATE", "tono-2")]
