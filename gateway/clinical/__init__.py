"""gateway.clinical: the reports of the programme, pure functions over what the store holds.

``protocol``  the final remote-monitoring protocol of a patient's period (definitions there)
``fhir``      a protocol and its readings as a FHIR R4 Bundle
``coverage``  the programme indicator and the workload per staff member
``render``    a protocol as text
``localtime`` local dates and wall-clock sessions of a patient's zone as ms UTC
"""

from .coverage import coverage_report as coverage_report
from .coverage import twelve_months_before as twelve_months_before
from .fhir import protocol_bundle as protocol_bundle
from .protocol import ProtocolError as ProtocolError
from .protocol import build_protocol as build_protocol
from .protocol import patient_period as patient_period
from .render import protocol_text as protocol_text
