"""gateway.clinical.render: the protocol as text, in the patient's local time."""

from gateway.clinical.protocol import build_protocol
from gateway.clinical.render import protocol_text

from .readings import BP_ROWS, CGM_ROWS, END, FIRST, GLU_ROWS, columns, local_ms, patient


def test_text_names_the_numbers_in_local_time():
    raised = local_ms(2, 8)
    alerts = [{"id": 4, "rule": "BP_CRISIS", "severity": "emergency", "t": raised, "raised": raised, "late": False,
               "state": "acknowledged", "escalated": 1, "escalated_at": raised + 900_000, "occurrences": 1,
               "events": [{"at": raised + 1_200_000, "actor": "DR1", "name": "Ivanova", "action": "acknowledged",
                           "note": None}]}]
    bindings = [{"device": "T1", "kind": "bp", "retired": None, "user": None, "valid_from": local_ms(1, 0),
                 "valid_to": None}]
    protocol = build_protocol(columns(BP_ROWS + GLU_ROWS + CGM_ROWS), patient=patient(), first=FIRST, end=END,
                              bindings=bindings, alerts=alerts)
    protocol.update(id=3, issued=local_ms(9, 10), issued_by="DR1", final=True)
    text = protocol_text(protocol)
    assert "patient P1 (AH, DM2), final #3, issued 2026-03-09 10:00 by DR1" in text
    assert "all 130/84.1 mmHg (n 8); morning 132/85 mmHg (n 3); evening 138/89 mmHg (n 2)" in text
    assert "first day 2026-03-01 discarded" in text and "pulse 69.1 /min (n 7)" in text
    assert "mean 7.5 mmol/L" in text and "TIR 3.9-10 50 %" in text
    assert "#4 BP_CRISIS emergency raised 2026-03-02 08:00, acknowledged; acknowledged 2026-03-02 08:20 by DR1 " \
           "Ivanova; response 20 min; escalated 1x" in text
    assert "T1 (bp): bound 2026-03-01 00:00 to open; valid readings bp 10; not valid 1" in text
    assert "C1 (kind unknown)" in text


def test_draft_without_readings():
    protocol = build_protocol(columns([]), patient=patient(), first=FIRST, end=END)
    protocol.update(issued=local_ms(9, 10), issued_by=None, final=False)
    text = protocol_text(protocol)
    assert "draft (not recorded)" in text and "Readings: 0" in text and "Alerts: 0" in text
    assert "Home BP" not in text and "CGM" not in text
