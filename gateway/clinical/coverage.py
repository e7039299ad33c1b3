"""The programme's indicator and the workload behind it, from the store's aggregates. Pure.

Indicator = patients under dispensary observation (AH, DM1, DM2) with at least one final
remote-monitoring protocol issued in the 12 months before the as-of time ÷ all such
patients, in %. "12 months before" is calendar months in UTC: [as_of − 12 months, as_of)
(29 February steps back to 28 February). The counting itself is SQL
(``Store.coverage_counts``: one row per physician, personal administrator and programme
combination); this module adds them up per programme (a patient in AH and DM2 counts in
both) and per staff member of the chosen role (``by``: physician or personal_admin),
including staff of that role who have no patient, and patients with nobody assigned
(``id`` None).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

GROUP_ROLES = ("personal_admin", "physician")  # what ``by`` may name; the first is the default
COUNTS = ("patients", "covered", "without_device")


def twelve_months_before(as_of: int) -> int:
    """ms UTC of the same UTC clock time 12 calendar months before ``as_of`` (ms UTC)."""
    when = datetime.datetime.fromtimestamp(as_of / 1000, datetime.timezone.utc)
    try:
        earlier = when.replace(year=when.year - 1)
    except ValueError:  # 29 February
        earlier = when.replace(year=when.year - 1, day=28)
    return int(earlier.timestamp() * 1000)


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _row(counts: Mapping[str, int], **head: object) -> dict:
    return {**head, **{key: counts[key] for key in COUNTS},
            "indicator_pct": _pct(counts["covered"], counts["patients"])}


def coverage_report(counts: Mapping, *, as_of: int, since: int, by: str = GROUP_ROLES[0]) -> dict:
    """The coverage report of ``Store.coverage_counts(as_of, since)``.

    Returns ``{"as_of", "since" (ms UTC), "patients", "covered", "without_device",
    "indicator_pct", "by_programme": {programme: {counts, indicator_pct}}, "by",
    "groups": [{"id", "name", counts, "indicator_pct"}] (by id, nobody last),
    "without_device_ids": [{"id", "physician", "personal_admin"}]}``.
    """
    if by not in GROUP_ROLES:
        raise ValueError(f"by must be one of {', '.join(GROUP_ROLES)}, not {by!r}")
    total = dict.fromkeys(COUNTS, 0)
    programmes: dict[str, dict[str, int]] = {}
    staff: dict[str | None, dict[str, int]] = {s["id"]: dict.fromkeys(COUNTS, 0)
                                               for s in counts["staff"] if s["role"] == by}
    for group in counts["groups"]:
        targets = [total, staff.setdefault(group[by], dict.fromkeys(COUNTS, 0))]
        targets += [programmes.setdefault(p, dict.fromkeys(COUNTS, 0)) for p in group["programmes"]]
        for key in COUNTS:
            for target in targets:
                target[key] += group[key]
    names = {s["id"]: s["name"] for s in counts["staff"]}
    order = sorted(staff, key=lambda s: (s is None, s or ""))
    return {"as_of": as_of, "since": since, **_row(total),
            "by_programme": {p: _row(programmes[p]) for p in sorted(programmes)},
            "by": by, "groups": [_row(staff[s], id=s, name=names.get(s)) for s in order],
            "without_device_ids": list(counts["without_device"])}
