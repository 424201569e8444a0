"""Which Moodle cohort a segment is, and which Moodle user a processor user id is (pure).

* A segment is the cohort whose ``idnumber`` equals the segment id, unless ``cohorts`` maps it
  to another idnumber (``--cohort SEGMENT=IDNUMBER`` or a YAML/JSON file of such pairs).
* A processor ``user_id`` is the Moodle user's ``id`` (the default, what the ingest contract
  and the plugin send), ``idnumber`` or ``username``, per site (``--user-field``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from processor.errors import ProcessorError

USER_FIELDS = ("id", "idnumber", "username")


@dataclass(frozen=True)
class SiteMapping:
    site_id: str
    user_field: str = "id"
    cohorts: Mapping[str, str] = field(default_factory=dict)  # segment_id -> cohort idnumber

    def __post_init__(self) -> None:
        if self.user_field not in USER_FIELDS:
            raise ProcessorError("INVALID_OPTION", f"user field must be one of {', '.join(USER_FIELDS)}, "
                                 f"not {self.user_field!r}", "$.user_field")
        seen: dict[str, str] = {}
        for seg, idn in self.cohorts.items():
            if not idn:
                raise ProcessorError("INVALID_OPTION", f"segment {seg!r} maps to an empty cohort idnumber",
                                     f"$.cohorts.{seg}")
            if idn in seen:
                raise ProcessorError("INVALID_OPTION", f"segments {seen[idn]!r} and {seg!r} both map to cohort "
                                     f"{idn!r}", f"$.cohorts.{seg}")
            seen[idn] = seg

    def cohort_for(self, segment_id: str) -> str:
        return self.cohorts.get(segment_id, segment_id)

    def segment_for(self, cohort_idnumber: str) -> str:
        for seg, idn in self.cohorts.items():
            if idn == cohort_idnumber:
                return seg
        if cohort_idnumber in self.cohorts:  # identity would collide with a remapped segment
            return ""
        return cohort_idnumber

    def user_key(self, moodle_user: Mapping[str, object]) -> str:
        """The processor's user id for a Moodle user record (from core_user_get_users_by_field)."""
        value = moodle_user.get(self.user_field)
        return "" if value is None else str(value)


def parse_cohort_pairs(pairs: tuple[str, ...] | list[str], file: Path | None = None) -> dict[str, str]:
    """``SEGMENT=IDNUMBER`` pairs plus an optional YAML/JSON mapping file ({segment: idnumber})."""
    out: dict[str, str] = {}
    if file is not None:
        import yaml

        try:
            doc = yaml.safe_load(file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ProcessorError("INVALID_OPTION", f"cannot read cohort map {file}: {exc}", "$") from None
        if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
            raise ProcessorError("INVALID_OPTION", f"{file} must map segment ids to cohort idnumbers (strings)", "$")
        out.update(doc)
    for p in pairs:
        seg, sep, idn = p.partition("=")
        if not sep or not seg or not idn:
            raise ProcessorError("INVALID_OPTION", f"--cohort expects SEGMENT=IDNUMBER, got {p!r}", "$.cohort")
        out[seg] = idn
    return out
