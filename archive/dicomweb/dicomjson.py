"""DICOM JSON (PS3.18 Annex F) helpers shared by QIDO-RS and WADO-RS.

Django-free: attribute names, element builders, and the rewriting of the stored `bulk:<TAG>`
markers (see archive.headers.metadata_json) into absolute BulkDataURIs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.datadict import dictionary_has_tag, dictionary_keyword, dictionary_VR, tag_for_keyword

BULK_MARKER = "bulk:"
_TAG_HEX = re.compile(r"^[0-9A-Fa-f]{8}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# A bulk data path: a top-level tag, or sequence tag / item index / tag ... for nested values.
_BULK_PATH = re.compile(r"^[0-9A-Fa-f]{8}(\.\d{1,6}\.[0-9A-Fa-f]{8}){0,8}$")


@dataclass(frozen=True)
class Attribute:
    """A public data dictionary attribute, named by keyword or by tag."""

    tag: int
    keyword: str
    vr: str

    @property
    def key(self) -> str:
        """The DICOM JSON object key: the tag as 8 upper-case hex digits."""
        return f"{self.tag:08X}"


def attribute(name: str) -> Attribute | None:
    """Return the attribute named by `name` (`PatientName` or `00100010`), or None if unknown.

    Private and retired-but-unnamed tags are refused: their VR (and so their matching rules) is
    not known from the dictionary.
    """
    if _TAG_HEX.match(name):
        tag = int(name, 16)
        if not dictionary_has_tag(tag):
            return None
    else:
        tag = tag_for_keyword(name)
        if tag is None:
            return None
    keyword = dictionary_keyword(tag)
    vr = dictionary_VR(tag)
    if not keyword:
        return None
    # Ambiguous VRs ("US or SS", "OB or OW"): the first is the JSON form for an empty value.
    return Attribute(tag=tag, keyword=keyword, vr=vr.split(" or ")[0])


def element(vr: str, values: Iterable | None = None) -> dict:
    """Return a DICOM JSON element; empty values give `{"vr": ...}` with no Value (F.2.5)."""
    kept = [v for v in (values or ()) if v is not None and v != ""]
    if not kept:
        return {"vr": vr}
    return {"vr": vr, "Value": kept}


def string(vr: str, value: str | None) -> dict:
    """A string element; a backslash separates multiple values (PS3.5 6.4)."""
    if not value:
        return {"vr": vr}
    return element(vr, value.split("\\"))


def person_name(value: str | None) -> dict:
    """A PN element: `=` separates the alphabetic, ideographic and phonetic groups (F.2.2)."""
    if not value:
        return {"vr": "PN"}
    names = []
    for one in value.split("\\"):
        groups = one.split("=")
        name = {
            label: group
            for label, group in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False)
            if group
        }
        names.append(name)
    return {"vr": "PN", "Value": names}


def number(vr: str, value: int | float | None) -> dict:
    """A numeric element (IS, DS, US, UL...), encoded as a JSON number (F.2.3)."""
    return element(vr, [] if value is None else [value])


def is_bulk(value) -> bool:
    """Whether a DICOM JSON element is a stored bulk data marker."""
    return isinstance(value, dict) and str(value.get("BulkDataURI", "")).startswith(BULK_MARKER)


def uid_or_blank(value: str) -> str:
    """`value` if it is shaped like a UID, else "" (for audit records of requested paths).

    PRIVACY: a path segment is client text and may be anything, a name included; only
    UID-shaped values are worth keeping in the audit trail.
    """
    return value if len(value) <= 64 and _UID.match(value) else ""


def valid_bulk_path(path: str) -> bool:
    """Whether `path` has the shape `TAG` or `TAG.ITEM.TAG...` (hex tags, decimal item indexes)."""
    return bool(_BULK_PATH.match(path))


def with_bulk_uris(metadata: dict, base_url: str) -> dict:
    """Return a copy of stored metadata with every bulk marker made `<base_url>/bulkdata/<path>`.

    Nested values (in sequence items) get a path `SEQTAG.ITEM.TAG` (item index from 0), so one
    URL names one value. Only markers are copied; other values are shared, not deep-copied.
    """
    return _rewrite(metadata, f"{base_url}/bulkdata/", "")


def _rewrite(dataset: dict, prefix: str, path: str) -> dict:
    result = {}
    for key, value in dataset.items():
        here = f"{path}{key}"
        if is_bulk(value):
            result[key] = {"vr": value.get("vr", "UN"), "BulkDataURI": prefix + here}
        elif isinstance(value, dict) and value.get("vr") == "SQ" and value.get("Value"):
            items = [
                _rewrite(item, prefix, f"{here}.{index}.") if isinstance(item, dict) else item
                for index, item in enumerate(value["Value"])
            ]
            result[key] = {**value, "Value": items}
        else:
            result[key] = value
    return result


def without_bulk(dataset: dict) -> dict:
    """Return a copy with bulk data elements left out (QIDO results carry no bulk data)."""
    result = {}
    for key, value in dataset.items():
        if is_bulk(value):
            continue
        if isinstance(value, dict) and value.get("vr") == "SQ" and value.get("Value"):
            value = {**value, "Value": [without_bulk(i) if isinstance(i, dict) else i for i in value["Value"]]}
        result[key] = value
    return result


def find_bulk(metadata: dict, path: str) -> dict | None:
    """Return the stored marker element that a bulk data path names, or None."""
    parts = path.upper().split(".")
    node: dict | None = metadata
    for position in range(0, len(parts) - 1, 2):
        sequence = (node or {}).get(parts[position])
        index = int(parts[position + 1])
        if not isinstance(sequence, dict) or sequence.get("vr") != "SQ":
            return None
        items = sequence.get("Value") or []
        if index >= len(items) or not isinstance(items[index], dict):
            return None
        node = items[index]
    found = (node or {}).get(parts[-1])
    return found if is_bulk(found) else None
