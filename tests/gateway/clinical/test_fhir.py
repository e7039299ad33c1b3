"""gateway.clinical.fhir: the protocol's FHIR R4 Bundle, validated with fhir.resources (R4B models)."""

import re

import pytest
from fhir.resources.R4B.bundle import Bundle

from gateway.clinical.fhir import instant, protocol_bundle, subject
from gateway.clinical.protocol import build_protocol

from .readings import BP_ROWS, CGM_ROWS, END, FIRST, GLU_ROWS, columns, local_ms, patient

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
BINDINGS = [{"device": d, "kind": k, "retired": r, "user": None, "valid_from": 0, "valid_to": None}
            for d, k, r in (("T1", "bp", None), ("G1", "glu", 7), ("C1", "cgm", None))]


def validate(bundle: dict) -> Bundle:
    """The bundle as fhir.resources' R4B model (pydantic 2: model_validate; 1: parse_obj)."""
    parse = getattr(Bundle, "model_validate", None) or Bundle.parse_obj
    return parse(bundle)


@pytest.fixture(scope="module")
def bundle():
    readings = columns(BP_ROWS + GLU_ROWS + CGM_ROWS)
    protocol = build_protocol(readings, patient=patient(), first=FIRST, end=END, bindings=BINDINGS)
    protocol.update(id=12, issued=local_ms(9, 10))
    return protocol_bundle(protocol, readings)


def resources(bundle, kind, code=None):
    found = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]
    return [r for r in found if code is None or r["code"]["coding"][0]["code"] == code]


def test_bundle_is_schema_valid_r4b(bundle):
    model = validate(bundle)
    assert model.type == "collection" and len(model.entry) == len(bundle["entry"])
    assert bundle["identifier"] == {"system": "urn:pmp-gateway:protocol", "value": "12"}
    assert bundle["timestamp"] == "2026-03-09T07:00:00.000Z"
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(urls)) == len(urls) and all(re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", u) for u in urls)


def test_devices_and_references(bundle):
    devices = resources(bundle, "Device")
    assert [(d["identifier"][0]["value"], d["status"]) for d in devices] == [
        ("C1", "active"), ("G1", "inactive"), ("T1", "active")]
    urls = {e["resource"]["identifier"][0]["value"]: e["fullUrl"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Device"}
    for observation in resources(bundle, "Observation", "85354-9"):
        assert observation["device"] == {"reference": urls["T1"]}
        assert observation["subject"] == {"reference": "Patient/P1",
                                          "identifier": {"system": "urn:pmp-gateway:patient", "value": "P1"}}


def test_blood_pressure_panel_and_heart_rate(bundle):
    panels = resources(bundle, "Observation", "85354-9")
    assert len(panels) == 10  # valid BP readings, the artifact left out
    first = panels[0]
    assert first["status"] == "final" and first["effectiveDateTime"] == "2026-03-01T04:00:00.000Z"
    assert first["category"][0]["coding"][0]["code"] == "vital-signs"
    assert [(c["code"]["coding"][0]["system"], c["code"]["coding"][0]["code"], c["valueQuantity"]) for c in
            first["component"]] == [
        (LOINC, "8480-6", {"value": 150.0, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}),
        (LOINC, "8462-4", {"value": 95.0, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"})]
    pulses = resources(bundle, "Observation", "8867-4")
    assert len(pulses) == 9  # 126/82 has no pulse
    assert pulses[0]["valueQuantity"] == {"value": 80.0, "unit": "beats/minute", "system": UCUM, "code": "/min"}
    assert all(p["effectiveDateTime"].endswith("Z") for p in panels + pulses)


def test_capillary_glucose_in_mmol_per_litre_and_censored(bundle):
    glucose = resources(bundle, "Observation", "15074-8")
    assert len(glucose) == 5  # the control-solution reading left out
    assert glucose[0]["category"][0]["coding"][0]["code"] == "laboratory"
    assert glucose[0]["valueQuantity"] == {"value": 5.0, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}
    lo = glucose[2]
    assert "valueQuantity" not in lo
    assert lo["dataAbsentReason"]["coding"][0]["code"] == "negative-infinity"
    assert lo["interpretation"][0]["coding"][0]["code"] == "<"


def test_cgm_summary_observations(bundle):
    ranges = resources(bundle, "Observation", "106793-3")[0]
    assert ranges["effectivePeriod"] == {"start": "2026-02-28T21:00:00.000Z", "end": "2026-03-07T21:00:00.000Z"}
    bands = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in ranges["component"]}
    assert bands == {"104642-4": 15.0, "104641-6": 10.0, "97510-2": 50.0, "104640-8": 15.0, "104639-0": 10.0}
    in_range = ranges["component"][2]["referenceRange"][0]
    assert (in_range["low"]["value"], in_range["high"]["value"]) == (3.9, 10.0)
    mean = resources(bundle, "Observation", "105273-7")[0]
    assert mean["valueQuantity"] == {"value": 7.22, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"}
    for code in ("104638-2", "97506-0", "104637-4"):
        assert resources(bundle, "Observation", code)[0]["valueQuantity"]["code"] == "%"
    assert resources(bundle, "Observation", "104636-6")[0]["valueQuantity"]["value"] == 1
    assert not [o for o in resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "105272-9"]


def test_patient_id_that_is_not_a_fhir_id_and_an_empty_bundle():
    assert subject("P_1") == {"identifier": {"system": "urn:pmp-gateway:patient", "value": "P_1"}}
    readings = columns([])
    protocol = build_protocol(readings, patient=patient(id="P_1"), first=FIRST, end=END)
    bundle = protocol_bundle(protocol, readings)
    validate(bundle)
    assert "entry" not in bundle and "identifier" not in bundle


def test_instant():
    assert instant(1_772_312_400_123) == "2026-02-28T21:00:00.123Z"
