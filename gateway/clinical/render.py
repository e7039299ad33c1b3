"""A protocol as plain text for people: local times of the patient's zone, units spelled
out, nothing computed here (every number comes from ``build_protocol``). Pure."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from .localtime import zone_of


def _local(ms: int | None, tz: str) -> str:
    if ms is None:
        return "open"
    return datetime.datetime.fromtimestamp(ms / 1000, zone_of(tz)).strftime("%Y-%m-%d %H:%M")


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:g}{' ' + unit if unit else ''}"


def _person(person: Mapping | None) -> str:
    if person is None:
        return "-"
    return f"{person['id']} {person['name']}" if person.get("name") else person["id"]


def _bp_line(name: str, mean: Mapping) -> str:
    if not mean["n"]:
        return f"{name} - (n 0)"
    return f"{name} {mean['sys']:g}/{mean['dia']:g} mmHg (n {mean['n']})"


def protocol_text(protocol: Mapping) -> str:
    """The protocol (``build_protocol``'s dict, with id, issued, issued_by and final as the
    CLI adds them) as lines of text."""
    patient, period, tz = protocol["patient"], protocol["period"], protocol["period"]["tz"]
    status = (f"final #{protocol['id']}" if protocol.get("final") else "draft (not recorded)")
    issued = f", issued {_local(protocol['issued'], tz)}" if protocol.get("issued") is not None else ""
    by = f" by {protocol['issued_by']}" if protocol.get("issued_by") else ""
    lines = [
        f"Remote-monitoring protocol: patient {patient['id']} ({', '.join(patient['programmes'])}), "
        f"{status}{issued}{by}",
        f"Period: {period['from']} to {period['to']} exclusive ({period['days']} days, {tz})",
        f"Physician {_person(patient.get('physician'))}; nurse {_person(patient.get('nurse'))}; "
        f"personal administrator {_person(patient.get('personal_admin'))}",
    ]
    r = protocol["readings"]
    lines.append(f"Readings: {r['total']} (bp {r['bp']}, glu {r['glu']}, cgm {r['cgm']}); not valid {r['not_valid']}; "
                 f"censored LO {r['censored']['LO']}, HI {r['censored']['HI']}")
    adherence = protocol["adherence"]
    parts = [f"{m} every {a['every_days']:g} d {a['met']}/{a['expected']} ({_num(a['pct'], '%')})"
             for m, a in adherence["metrics"].items()]
    lines.append(f"Adherence: {_num(adherence['pct'], '%')}" + (f": {'; '.join(parts)}" if parts else " (no plan)"))
    bp = protocol["bp"]
    if bp["n"]:
        verdict = {None: "", True: ", above target", False: ", below target"}[bp["above_target"]]
        lines.append(f"Home BP (ESH; first day {bp['first_day']} discarded, {bp['discarded']} readings): "
                     f"{_bp_line('all', bp['all'])}; {_bp_line('morning', bp['morning'])}; "
                     f"{_bp_line('evening', bp['evening'])}; pulse {_num(bp['pulse']['mean'], '/min')} "
                     f"(n {bp['pulse']['n']}); target {bp['target']['sys']:g}/{bp['target']['dia']:g}{verdict}"
                     f"{'' if bp['sufficient'] else '; too few readings for a home BP mean'}")
    glu = protocol["glucose"]
    if glu["n"]:
        b = glu["bounds"]
        lines.append(f"Capillary glucose: n {glu['n']}, mean {_num(glu['mean'], 'mmol/L')} (min {_num(glu['min'])}, "
                     f"max {_num(glu['max'])}); below {b['below_l1']:g}: {glu['below_l1']}, below {b['below_l2']:g}: "
                     f"{glu['below_l2']}, above {b['above']:g}: {glu['above']}")
    cgm = protocol["cgm"]
    if cgm["n"]:
        b = cgm["bounds"]
        lines.append(f"CGM: n {cgm['n']}, coverage {_num(cgm['coverage_pct'], '%')} ({cgm['days_with_data']} days"
                     f"{'' if cgm['sufficient'] else ', below the data needed'}), mean {_num(cgm['mean'], 'mmol/L')}, "
                     f"CV {_num(cgm['cv_pct'], '%')}, GMI {_num(cgm['gmi_pct'], '%')}; "
                     f"TIR {b['tir_low']:g}-{b['tir_high']:g} {_num(cgm['tir_pct'], '%')}; "
                     f"TBR <{b['tir_low']:g} {_num(cgm['tbr_pct'], '%')} "
                     f"(<{b['tbr_l2']:g} {_num(cgm['tbr_l2_pct'], '%')}); "
                     f"TAR >{b['tir_high']:g} {_num(cgm['tar_pct'], '%')} "
                     f"(>{b['tar_l2']:g} {_num(cgm['tar_l2_pct'], '%')})")
    alerts = protocol["alerts"]
    severities = ", ".join(f"{s} {n}" for s, n in alerts["by_severity"].items())
    lines.append(f"Alerts: {alerts['total']}" + (f" ({severities}); acknowledged {alerts['acknowledged']}, resolved "
                                                 f"{alerts['resolved']}, escalated {alerts['escalated']}, open "
                                                 f"{alerts['open']}" if alerts["total"] else ""))
    for a in alerts["items"]:
        handled = [f"{step} {_local(a[step]['at'], tz)} by {_person({'id': a[step]['by'], 'name': a[step]['name']})}"
                   for step in ("acknowledged", "resolved") if a[step] is not None]
        lines.append(f"  #{a['id']} {a['rule']} {a['severity']}{' (late)' if a['late'] else ''} raised "
                     f"{_local(a['raised'], tz)}, {a['state']}" + (f"; {'; '.join(handled)}" if handled else "")
                     + (f"; response {a['response_min']:g} min" if a["response_min"] is not None else "")
                     + (f"; escalated {a['escalated']}x" if a["escalated"] else ""))
    lines.append(f"Devices: {len(protocol['devices'])}")
    for d in protocol["devices"]:
        bound = ", ".join(f"{_local(b['from'], tz)} to {_local(b['to'], tz)}" for b in d["bindings"]) or "not bound"
        counts = ", ".join(f"{m} {n}" for m, n in d["readings"].items() if n)
        retired = ", retired" if d["retired"] else ""
        lines.append(f"  {d['id']} ({d['kind'] or 'kind unknown'}{retired}): bound {bound}; "
                     f"valid readings {counts or 'none'}; not valid {d['not_valid']}")
    return "\n".join(lines)
