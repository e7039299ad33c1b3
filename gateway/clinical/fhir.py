"""A protocol and its readings as a FHIR R4 Bundle (a JSON-able dict). Pure.

The Bundle is of type ``collection``: the data of the protocol for an EHR to file, not a
``document`` (which would need a Composition with sections, author and attestation; the
protocol JSON in the ``protocols`` table is the document of record). It holds:

- the patient only as a reference, ``Patient/{id}`` with the registry id as identifier
  (``urn:pmp-gateway:patient``); an id holding ``_`` is not a FHIR logical id, so then
  only the identifier is given;
- one ``Device`` per device of the protocol (identifier ``urn:pmp-gateway:device``, the
  device id as user-friendly name, status inactive once retired);
- per valid reading of the period (``protocol.valid_mask``), status ``final``, effective
  time in UTC with ``Z``, the device that measured it and the reading id as identifier
  (``urn:pmp-gateway:reading``):
  BP: LOINC 85354-9 panel with components 8480-6 systolic and 8462-4 diastolic (UCUM
  ``mm[Hg]``), category vital-signs; pulse when measured: 8867-4 heart rate (``/min``),
  vital-signs; capillary glucose: 15074-8 Glucose [Moles/volume] in Blood (``mmol/L``, the
  unit we store), category laboratory; a censored LO / HI glucose has no value but
  ``dataAbsentReason`` negative-infinity / positive-infinity and interpretation ``<`` / ``>``
  (off scale low / high);
- CGM as the summary observations of the HL7 CGM implementation guide (STU 1; LOINC
  105273-7 mean glucose in mmol/L, 106793-3 times-in-ranges panel with components 104642-4
  very low, 104641-6 low, 97510-2 in range, 104640-8 high, 104639-0 very high, each with
  the bounds used as its reference range; 104638-2 CV, 97506-0 GMI, 104637-4 sensor data
  coverage, 104636-6 days with data), effective over the period. Single sensor readings
  (288 a day) are not exported.

Entries are named by ``urn:uuid`` full URLs, UUID-5 of the reading, device or summary, so
the same protocol gives the same bundle.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Mapping

import numpy as np

from core.codes import Flag, Kind
from gateway.store import ReadingColumns

from .protocol import valid_mask

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ABSENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
PATIENT_SYSTEM = "urn:pmp-gateway:patient"
DEVICE_SYSTEM = "urn:pmp-gateway:device"
READING_SYSTEM = "urn:pmp-gateway:reading"
PROTOCOL_SYSTEM = "urn:pmp-gateway:protocol"
URN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:pmp-gateway")  # names of the bundle's entries

# What each observation is: LOINC code and display (None: the code's own display is not given).
CODES: dict[str, tuple[str, str | None]] = {
    "bp": ("85354-9", "Blood pressure panel with all children optional"),
    "sys": ("8480-6", "Systolic blood pressure"),
    "dia": ("8462-4", "Diastolic blood pressure"),
    "pulse": ("8867-4", "Heart rate"),
    "glucose": ("15074-8", "Glucose [Moles/volume] in Blood"),
    "cgm_mean": ("105273-7", None),
    "cgm_ranges": ("106793-3", None),
    "very_low": ("104642-4", None),
    "low": ("104641-6", None),
    "in_range": ("97510-2", None),
    "high": ("104640-8", None),
    "very_high": ("104639-0", None),
    "cv": ("104638-2", None),
    "gmi": ("97506-0", None),
    "coverage": ("104637-4", None),
    "days": ("104636-6", None),
}
TEXTS: dict[str, str] = {
    "bp": "Blood pressure", "pulse": "Heart rate", "glucose": "Capillary blood glucose",
    "cgm_mean": "CGM mean glucose", "cgm_ranges": "CGM times in ranges", "very_low": "CGM time very low (%)",
    "low": "CGM time low (%)", "in_range": "CGM time in range (%)", "high": "CGM time high (%)",
    "very_high": "CGM time very high (%)", "cv": "CGM glucose coefficient of variation (%)",
    "gmi": "Glucose management indicator (%)", "coverage": "CGM sensor data coverage (%)",
    "days": "CGM days with data",
}
# Unit name -> (UCUM code, human unit).
UNITS: dict[str, tuple[str, str]] = {"mmHg": ("mm[Hg]", "mmHg"), "/min": ("/min", "beats/minute"),
                                     "mmol/L": ("mmol/L", "mmol/L"), "%": ("%", "%"), "d": ("d", "days")}
DEVICE_TYPES: dict[str | None, str] = {"bp": "Blood pressure monitor", "glu": "Blood glucose meter",
                                       "cgm": "Continuous glucose monitor", "hub": "Home hub",
                                       "unknown": "Measuring device", None: "Measuring device"}
# Censored glucose: flag -> (data-absent-reason code, interpretation code and display).
CENSORED: dict[int, tuple[str, str, str]] = {int(Flag.RANGE_LO): ("negative-infinity", "<", "Off scale low"),
                                             int(Flag.RANGE_HI): ("positive-infinity", ">", "Off scale high")}
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def instant(ms: int) -> str:
    """ms UTC -> FHIR instant/dateTime in UTC, ``2026-11-25T08:00:00.000Z``."""
    seconds, millis = divmod(int(ms), 1000)
    when = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return f"{when:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


def _urn(name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(URN_NAMESPACE, name)}"


def _concept(key: str) -> dict:
    code, display = CODES[key]
    coding = {"system": LOINC, "code": code, **({"display": display} if display else {})}
    return {"coding": [coding], "text": TEXTS.get(key, display)}


def _category(code: str) -> list[dict]:
    display = {"vital-signs": "Vital Signs", "laboratory": "Laboratory"}[code]
    return [{"coding": [{"system": CATEGORY_SYSTEM, "code": code, "display": display}]}]


def _quantity(value: float, unit: str, digits: int) -> dict:
    code, human = UNITS[unit]
    return {"value": round(float(value), digits), "unit": human, "system": UCUM, "code": code}


def subject(patient_id: str) -> dict:
    """The Reference to the patient: ``Patient/{id}`` when the id is a FHIR id, and always
    the registry identifier."""
    identifier = {"system": PATIENT_SYSTEM, "value": patient_id}
    if _FHIR_ID.fullmatch(patient_id):
        return {"reference": f"Patient/{patient_id}", "identifier": identifier}
    return {"identifier": identifier}


def device_resource(device: Mapping) -> dict:
    """A protocol device (``protocol.devices_used``) as a FHIR Device."""
    return {"resourceType": "Device",
            "identifier": [{"system": DEVICE_SYSTEM, "value": device["id"]}],
            "status": "inactive" if device.get("retired") is not None else "active",
            "deviceName": [{"name": device["id"], "type": "user-friendly-name"}],
            "type": {"text": DEVICE_TYPES.get(device.get("kind"), DEVICE_TYPES[None])}}


def _observation(key: str, category: str, who: dict, reading_id: str, t: int, device: str | None) -> dict:
    observation = {"resourceType": "Observation",
                   "identifier": [{"system": READING_SYSTEM, "value": reading_id}],
                   "status": "final", "category": _category(category), "code": _concept(key),
                   "subject": who, "effectiveDateTime": instant(t)}
    if device is not None:
        observation["device"] = {"reference": device}
    return observation


def reading_observations(readings: ReadingColumns, since: int, until: int, who: dict,
                         device_urls: Mapping[str, str]) -> list[tuple[str, dict]]:
    """(fullUrl, Observation) of each valid bp and glu reading in [since, until), by time."""
    chosen = np.flatnonzero(valid_mask(readings) & (readings.t >= since) & (readings.t < until)
                            & ((readings.kind == Kind.BP) | (readings.kind == Kind.GLU)))
    out = []
    for i in chosen.tolist():
        rid, t = str(int(readings.id[i])), int(readings.t[i])
        device = device_urls.get(readings.device_ids[readings.device[i]])
        if readings.kind[i] == Kind.BP:
            bp = _observation("bp", "vital-signs", who, rid, t, device)
            bp["component"] = [{"code": _concept(name),
                                "valueQuantity": _quantity(getattr(readings, name)[i], "mmHg", 1)}
                               for name in ("sys", "dia")]
            out.append((_urn(f"reading/{rid}/bp"), bp))
            if np.isfinite(readings.pul[i]):
                pulse = _observation("pulse", "vital-signs", who, f"{rid}/pulse", t, device)
                pulse["valueQuantity"] = _quantity(readings.pul[i], "/min", 1)
                out.append((_urn(f"reading/{rid}/pulse"), pulse))
            continue
        glucose = _observation("glucose", "laboratory", who, rid, t, device)
        censored = CENSORED.get(int(readings.flags[i]) & (int(Flag.RANGE_LO) | int(Flag.RANGE_HI)))
        if censored is None:
            glucose["valueQuantity"] = _quantity(readings.glu[i], "mmol/L", 2)
        else:
            absent, code, display = censored
            glucose["dataAbsentReason"] = {"coding": [{"system": ABSENT_SYSTEM, "code": absent}]}
            glucose["interpretation"] = [{"coding": [{"system": INTERPRETATION_SYSTEM, "code": code,
                                                      "display": display}]}]
        out.append((_urn(f"reading/{rid}/glucose"), glucose))
    return out


def _range(low: float | None, high: float | None) -> list[dict]:
    bounds = {}
    if low is not None:
        bounds["low"] = _quantity(low, "mmol/L", 2)
    if high is not None:
        bounds["high"] = _quantity(high, "mmol/L", 2)
    return [bounds]


def cgm_observations(protocol: Mapping, who: dict) -> list[tuple[str, dict]]:
    """(fullUrl, Observation) of the protocol's CGM summary; none without CGM readings."""
    cgm, period = protocol["cgm"], protocol["period"]
    if not cgm["n"]:
        return []
    effective = {"start": instant(period["from_ms"]), "end": instant(period["to_ms"])}
    name = f"protocol/{protocol['patient']['id']}/{period['from']}/{period['to']}/cgm"

    def summary(key: str, value: dict | None = None) -> tuple[str, dict]:
        observation = {"resourceType": "Observation", "status": "final", "category": _category("laboratory"),
                       "code": _concept(key), "subject": who, "effectivePeriod": effective}
        if value is not None:
            observation["valueQuantity"] = value
        return _urn(f"{name}/{key}"), observation

    bounds = cgm["bounds"]
    bands = (("very_low", cgm["tbr_l2_pct"], None, bounds["tbr_l2"]),
             ("low", cgm["tbr_pct"] - cgm["tbr_l2_pct"], bounds["tbr_l2"], bounds["tir_low"]),
             ("in_range", cgm["tir_pct"], bounds["tir_low"], bounds["tir_high"]),
             ("high", cgm["tar_pct"] - cgm["tar_l2_pct"], bounds["tir_high"], bounds["tar_l2"]),
             ("very_high", cgm["tar_l2_pct"], bounds["tar_l2"], None))
    ranges = summary("cgm_ranges")
    ranges[1]["component"] = [{"code": _concept(key), "valueQuantity": _quantity(pct, "%", 1),
                               "referenceRange": _range(low, high)} for key, pct, low, high in bands]
    out = [ranges]
    for key, value, unit, digits in (("cgm_mean", cgm["mean"], "mmol/L", 2), ("cv", cgm["cv_pct"], "%", 1),
                                     ("gmi", cgm["gmi_pct"], "%", 1), ("coverage", cgm["coverage_pct"], "%", 1),
                                     ("days", cgm["days_with_data"], "d", 0)):
        if value is not None:
            out.append(summary(key, _quantity(value, unit, digits)))
    return out


def protocol_bundle(protocol: Mapping, readings: ReadingColumns) -> dict:
    """The FHIR R4 Bundle (type collection) of a protocol (``build_protocol``'s dict, with
    ``issued`` ms and ``id`` when recorded) and the readings it was built from."""
    who = subject(protocol["patient"]["id"])
    devices = [(_urn(f"device/{d['id']}"), d) for d in protocol["devices"]]
    device_urls = {d["id"]: url for url, d in devices}
    period = protocol["period"]
    entries = [(url, device_resource(d)) for url, d in devices]
    entries += reading_observations(readings, period["from_ms"], period["to_ms"], who, device_urls)
    entries += cgm_observations(protocol, who)
    bundle: dict = {"resourceType": "Bundle", "type": "collection"}
    if protocol.get("id") is not None:
        bundle["identifier"] = {"system": PROTOCOL_SYSTEM, "value": str(protocol["id"])}
    if protocol.get("issued") is not None:
        bundle["timestamp"] = instant(protocol["issued"])
    if entries:  # FHIR JSON has no empty arrays
        bundle["entry"] = [{"fullUrl": url, "resource": resource} for url, resource in entries]
    return bundle
