"""The viewer's corner overlay text, composed on the server (docs/viewer-protocol.md, frame header `overlay`).

The client only places these lines in the four corners; what is shown, and whether demographics
are shown at all, is decided here from the principal's `may_see_phi`.
"""

from __future__ import annotations

from typing import Any


def format_person_name(value: str) -> str:
    """DICOM PN "Family^Given^Middle^Prefix^Suffix" (first, alphabetic group) as "Family, Given Middle"."""
    alphabetic = (value or "").split("=")[0]
    parts = [p.strip() for p in alphabetic.split("^")]
    family = parts[0] if parts else ""
    given = " ".join(p for p in parts[1:3] if p)
    return f"{family}, {given}" if family and given else family or given


def format_da(value: str) -> str:
    """DICOM DA "YYYYMMDD" as "YYYY-MM-DD" (other values unchanged)."""
    value = (value or "").strip()
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def _number(value: float | None, unit: str = "") -> str | None:
    if value is None:
        return None
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{text}{unit}"


def dicom_json_value(metadata: dict, tag: str) -> Any:
    """First value of `tag` ("00180050") in an instance's DICOM JSON header, or None."""
    element = (metadata or {}).get(tag)
    if not isinstance(element, dict):
        return None
    values = element.get("Value")
    if not isinstance(values, list) or not values:
        return None
    return values[0]


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def frames_per_second(instance) -> float | None:
    """Cine rate from Recommended Display Frame Rate (0008,2144), else Frame Time (0018,1063) in ms."""
    metadata = instance.metadata or {}
    rate = _float(dicom_json_value(metadata, "00082144"))
    if rate is not None and 0 < rate <= 1000:
        return rate
    frame_time = _float(dicom_json_value(metadata, "00181063"))
    if frame_time is not None and frame_time > 0:
        return round(min(1000.0, 1000.0 / frame_time), 3)
    return None


def instance_facts(instance) -> dict[str, Any]:
    """What the overlay needs of one instance, read once (no PHI)."""
    metadata = instance.metadata or {}
    return {
        "instance_number": instance.instance_number,
        "frames": instance.number_of_frames,
        "slice_location": instance.slice_location
        if instance.slice_location is not None
        else _float(dicom_json_value(metadata, "00201041")),
        "slice_thickness": _float(dicom_json_value(metadata, "00180050")),
        "window_center": _float(dicom_json_value(metadata, "00281050")),
        "window_width": _float(dicom_json_value(metadata, "00281051")),
    }


def study_facts(study, *, phi: bool) -> dict[str, Any]:
    """Demographics and study lines; empty demographics when the principal may not see PHI."""
    facts: dict[str, Any] = {"description": study.study_description or "", "phi": phi}
    if phi:
        patient = study.patient
        facts.update(
            patient_name=format_person_name(patient.patient_name),
            patient_id=patient.patient_id,
            birth_date=format_da(patient.patient_birth_date),
            sex=patient.patient_sex,
            study_date=format_da(study.study_date),
        )
    return facts


def compose(
    *,
    study: dict[str, Any],
    series: dict[str, Any],
    instance: dict[str, Any],
    position: int | None,
    count: int | None,
    frame: int,
    window: tuple[float, float] | None,
    zoom: float | None,
) -> dict[str, list[str]]:
    """Return {"tl", "tr", "bl", "br"}: lists of text lines for the four corners."""
    tl: list[str] = []
    if study.get("phi"):
        tl.append(study["patient_name"] or "(no name)")
        tl.append(f"ID: {study['patient_id']}")
        born = " ".join(p for p in (study.get("birth_date"), study.get("sex")) if p)
        if born:
            tl.append(f"Born: {born}")
    tr: list[str] = []
    if study.get("description"):
        tr.append(study["description"])
    if study.get("phi") and study.get("study_date"):
        tr.append(study["study_date"])
    if series.get("description"):
        tr.append(series["description"])
    tr.append(f"Se: {series['number'] if series.get('number') is not None else '-'}")
    number = instance.get("instance_number")
    image = f"Im: {number if number is not None else '-'}"
    if position is not None and count:
        image += f" ({position + 1}/{count})"
    if instance.get("frames", 1) > 1:
        image += f" Fr: {frame + 1}/{instance['frames']}"
    tr.append(image)
    bl: list[str] = []
    if window is not None:
        bl.append(f"W: {_number(window[1])} L: {_number(window[0])}")
    if zoom is not None:
        bl.append(f"Zoom: {zoom:.2f}x")
    br: list[str] = []
    location = _number(instance.get("slice_location"), " mm")
    if location is not None:
        br.append(f"Loc: {location}")
    thickness = _number(instance.get("slice_thickness"), " mm")
    if thickness is not None:
        br.append(f"Thk: {thickness}")
    if series.get("modality"):
        br.append(series["modality"])
    return {"tl": tl, "tr": tr, "bl": bl, "br": br}
