"""Escalation of unacknowledged emergencies (DESIGN.md "Alert lifecycle"): which alerts are due.

An ``emergency`` alert still ``open`` (nobody acknowledged it) ``ESCALATE_AFTER_MS`` after it
was paged is escalated; while it stays open it is escalated again every further
``ESCALATE_AFTER_MS`` (escalation 1, 2, 3, ...). "Paged" is the later of the alert's last
notification (raised, or re-notified after its cooldown or when a late alert was confirmed
by a current reading: only then does it page as an emergency) and its last escalation.

The decision is a pure function of stored times and the clock, never of memory, so the
sweep that applies it (``Store.escalate_alerts``) may run at any rate, twice, or after a
restart: an alert is escalated at most once a period, and a gateway that was down for an
hour escalates each overdue alert once when it comes back (the next period starts then),
not once for every period it missed.

Times are int ms UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

ESCALATE_AFTER_MS = 15 * 60_000  # an open emergency not acknowledged for this long is escalated
ESCALATED_SEVERITY = "emergency"  # only alerts of this severity are escalated
ESCALATED_STATE = "open"  # ... and only while in this state (acknowledging stops escalation)


class Pending(NamedTuple):
    """An open emergency alert, as stored."""

    id: int
    notified: int  # ms UTC it was last paged (raised or re-notified)
    escalated: int  # escalations so far
    escalated_at: int | None  # ms UTC of the last escalation, None before the first


def due_ms(alert: Pending, after_ms: int = ESCALATE_AFTER_MS) -> int:
    """When ``alert``'s next escalation is due, ms UTC: ``after_ms`` after it was last paged
    or escalated, whichever is later."""
    last = alert.notified if alert.escalated_at is None else max(alert.notified, alert.escalated_at)
    return last + after_ms


def escalations_due(pending: Iterable[Pending], now_ms: int, after_ms: int = ESCALATE_AFTER_MS
                    ) -> list[tuple[int, int]]:
    """``(alert id, escalation number)`` of each ``pending`` alert due at ``now_ms``, in the
    order given; the number is the alert's escalation count after this one (1 the first time)."""
    return [(alert.id, alert.escalated + 1) for alert in pending if now_ms >= due_ms(alert, after_ms)]
