"""gateway.clinical.coverage: the indicator summed from the store's aggregate rows."""

import datetime

import pytest

from gateway.clinical.coverage import coverage_report, twelve_months_before

STAFF = [{"id": "PA1", "name": "Petrov", "role": "personal_admin"},
         {"id": "PA2", "name": "Orlova", "role": "personal_admin"},
         {"id": "PA3", "name": "Idle", "role": "personal_admin"},
         {"id": "DR1", "name": "Ivanova", "role": "physician"}]
GROUPS = [
    {"physician": "DR1", "personal_admin": "PA1", "programmes": ["AH"], "patients": 3, "covered": 2,
     "without_device": 0},
    {"physician": "DR1", "personal_admin": "PA1", "programmes": ["AH", "DM2"], "patients": 1, "covered": 0,
     "without_device": 1},
    {"physician": None, "personal_admin": "PA2", "programmes": ["DM1"], "patients": 4, "covered": 1,
     "without_device": 2},
    {"physician": "DR1", "personal_admin": None, "programmes": ["AH"], "patients": 2, "covered": 2,
     "without_device": 0},
]
COUNTS = {"groups": GROUPS, "staff": STAFF, "without_device": [{"id": "P9", "physician": None,
                                                                 "personal_admin": "PA2"}]}


def test_indicator_by_programme_and_personal_admin():
    report = coverage_report(COUNTS, as_of=2, since=1)
    assert (report["patients"], report["covered"], report["without_device"], report["indicator_pct"]) == (10, 5, 3,
                                                                                                          50.0)
    assert report["by_programme"] == {
        "AH": {"patients": 6, "covered": 4, "without_device": 1, "indicator_pct": 66.7},
        "DM1": {"patients": 4, "covered": 1, "without_device": 2, "indicator_pct": 25.0},
        "DM2": {"patients": 1, "covered": 0, "without_device": 1, "indicator_pct": 0.0}}
    assert report["groups"] == [
        {"id": "PA1", "name": "Petrov", "patients": 4, "covered": 2, "without_device": 1, "indicator_pct": 50.0},
        {"id": "PA2", "name": "Orlova", "patients": 4, "covered": 1, "without_device": 2, "indicator_pct": 25.0},
        {"id": "PA3", "name": "Idle", "patients": 0, "covered": 0, "without_device": 0, "indicator_pct": None},
        {"id": None, "name": None, "patients": 2, "covered": 2, "without_device": 0, "indicator_pct": 100.0}]
    assert report["without_device_ids"] == COUNTS["without_device"]


def test_by_physician():
    report = coverage_report(COUNTS, as_of=2, since=1, by="physician")
    assert [(g["id"], g["patients"], g["covered"]) for g in report["groups"]] == [("DR1", 6, 4), (None, 4, 1)]
    with pytest.raises(ValueError, match="nurse"):
        coverage_report(COUNTS, as_of=2, since=1, by="nurse")


def test_empty_cohort():
    report = coverage_report({"groups": [], "staff": [], "without_device": []}, as_of=2, since=1)
    assert report["patients"] == 0 and report["indicator_pct"] is None and report["groups"] == []


def ms(*args):
    return int(datetime.datetime(*args, tzinfo=datetime.timezone.utc).timestamp() * 1000)


def test_twelve_calendar_months_before():
    assert twelve_months_before(ms(2026, 11, 25, 8, 30)) == ms(2025, 11, 25, 8, 30)
    assert twelve_months_before(ms(2028, 2, 29, 12)) == ms(2027, 2, 28, 12)
