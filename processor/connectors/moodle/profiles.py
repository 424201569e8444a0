"""Moodle user records -> our profile format, and custom profile field definitions (pure, except
:func:`plugin_fields`, which asks Moodle).

Profiles use Moodle's own field names (docs/contract.md): the standard fields that
``core_user_get_users_by_field`` returns, custom fields as ``profile_field_<shortname>``,
datetimes as epoch seconds, checkboxes as booleans, ``interests`` as a list of strings.
Moodle's web services do not return ``timecreated``, ``timemodified``, ``lastlogin``,
``currentlogin``, ``middlename``, ``alternatename`` or the phonetic names (user/lib.php
``user_get_user_details``): only the plugin's snapshots carry those.

Field definitions: Moodle's core web services do not list them. The local_segmentsync plugin's
``local_segmentsync_get_profile_fields`` does; without it they are derived from the users'
``customfields`` (datatype, name, and for menus only the options some user holds, which is
reported as incomplete; fields no user has a value for are not seen at all).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from processor.connectors.moodle.ws import MoodleClient, MoodleFatal
from processor.rules.fields import CUSTOM_PREFIX, FieldType

log = logging.getLogger("processor.connectors.moodle")

PLUGIN_FUNCTION = "local_segmentsync_get_profile_fields"

# Standard fields core_user_get_users_by_field can return that our contract knows.
STANDARD = ("username", "email", "firstname", "lastname", "idnumber", "institution", "department", "phone1",
            "phone2", "address", "city", "country", "lang", "timezone", "theme", "calendartype", "auth",
            "description", "suspended", "confirmed", "firstaccess", "lastaccess", "interests")
_DATETIME = {"firstaccess", "lastaccess"}
_BOOL = {"suspended", "confirmed"}

# Moodle's profile field datatypes (user/profile/field/*) -> ours
DATATYPES = {"text": FieldType.TEXT, "textarea": FieldType.TEXTAREA, "menu": FieldType.MENU,
             "checkbox": FieldType.CHECKBOX, "datetime": FieldType.DATETIME, "social": FieldType.TEXT}


@dataclass
class FieldDef:
    shortname: str
    name: str
    datatype: FieldType
    options: list[str] = field(default_factory=list)
    complete: bool = True  # False: menu options derived from user values (some may be missing)
    source: str = "plugin"  # plugin | derived
    moodle_type: str = ""

    def payload(self) -> dict[str, Any]:
        return {"name": self.name or self.shortname, "datatype": self.datatype.value, "options": list(self.options)}


def _bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip() not in ("", "0", "false")
    return bool(v)


def _int(v: Any) -> Any:
    try:
        return int(v)
    except (TypeError, ValueError):
        return v


def to_profile(user: Mapping[str, Any], fields: Mapping[str, FieldDef] | None = None) -> dict[str, Any]:
    """One record of core_user_get_users_by_field -> our profile."""
    out: dict[str, Any] = {}
    for k in STANDARD:
        if k not in user or user[k] is None:
            continue
        v = user[k]
        if k in _BOOL:
            out[k] = _bool(v)
        elif k in _DATETIME:
            out[k] = _int(v)
        elif k == "interests":
            out[k] = [s.strip() for s in str(v).split(",") if s.strip()]
        else:
            out[k] = str(v)
    for cf in user.get("customfields") or []:
        short = str(cf.get("shortname") or "")
        if not short:
            continue
        known = (fields or {}).get(short)
        dtype = known.datatype if known else DATATYPES.get(str(cf.get("type")), FieldType.TEXT)
        v = cf.get("value")
        if dtype is FieldType.CHECKBOX:
            v = _bool(v)
        elif dtype is FieldType.DATETIME:
            v = _int(v)
        elif v is not None:
            v = str(v)
        out[CUSTOM_PREFIX + short] = v
    return out


class FieldCollector:
    """Derives field definitions from users' ``customfields`` (when the plugin is not there)."""

    def __init__(self) -> None:
        self.fields: dict[str, FieldDef] = {}
        self._menu_values: dict[str, set[str]] = {}

    def add(self, users: Iterable[Mapping[str, Any]]) -> None:
        for u in users:
            for cf in u.get("customfields") or []:
                short = str(cf.get("shortname") or "")
                if not short:
                    continue
                mtype = str(cf.get("type") or "")
                f = self.fields.get(short)
                if f is None:
                    f = self.fields[short] = FieldDef(short, str(cf.get("name") or short),
                                                      DATATYPES.get(mtype, FieldType.TEXT), source="derived",
                                                      moodle_type=mtype, complete=mtype != "menu")
                if f.datatype is FieldType.MENU and cf.get("value") not in (None, ""):
                    self._menu_values.setdefault(short, set()).add(str(cf["value"]))

    def result(self) -> dict[str, FieldDef]:
        for short, values in self._menu_values.items():
            self.fields[short].options = sorted(values)
        return self.fields

    def notes(self) -> list[str]:
        out = []
        for f in self.result().values():
            if f.datatype is FieldType.MENU:
                out.append(f"menu field {f.shortname!r}: options derived from the values users hold "
                           f"({', '.join(f.options)}); options nobody holds are missing. Install local_segmentsync "
                           "for the full list")
            if f.moodle_type not in DATATYPES:
                out.append(f"field {f.shortname!r} has Moodle datatype {f.moodle_type!r}; imported as TEXT")
        out.append("custom fields that no user has a value for (or that are not visible to the web-service user) "
                   "are not seen without local_segmentsync")
        return out


def parse_plugin_fields(answer: Any) -> dict[str, FieldDef]:
    """``local_segmentsync_get_profile_fields``' answer: ``{"fields": [...]}`` or a list, each
    ``{shortname, name, datatype, options | param1}`` (datatype Moodle's or ours, options a list
    or Moodle's newline-separated ``param1``)."""
    rows = answer.get("fields", []) if isinstance(answer, dict) else answer
    out: dict[str, FieldDef] = {}
    for r in rows or []:
        if not isinstance(r, dict) or not r.get("shortname"):
            continue
        raw = str(r.get("datatype") or "text")
        dtype = DATATYPES.get(raw.lower()) or (FieldType(raw) if raw in FieldType.__members__ else FieldType.TEXT)
        opts = r.get("options")
        if opts is None and dtype is FieldType.MENU:
            opts = [o.strip() for o in str(r.get("param1") or "").splitlines() if o.strip()]
        out[str(r["shortname"])] = FieldDef(str(r["shortname"]), str(r.get("name") or r["shortname"]), dtype,
                                            [str(o) for o in opts or []] if dtype is FieldType.MENU else [],
                                            True, "plugin", raw)
    return out


def plugin_fields(client: MoodleClient) -> tuple[dict[str, FieldDef] | None, str]:
    """The plugin's field definitions, or ``None`` and why they are not available."""
    try:
        return parse_plugin_fields(client.call(PLUGIN_FUNCTION)), ""
    except MoodleFatal as err:
        if err.code in ("MOODLE_FUNCTION_MISSING", "MOODLE_ACCESS"):
            why = ("local_segmentsync is not installed" if err.code == "MOODLE_FUNCTION_MISSING" else
                   f"{PLUGIN_FUNCTION} is not in the token's external service")
            return None, why
        raise


def normalize(v: Any) -> Any:
    """Values that mean "nothing" compare equal: absent, null, "", [], false."""
    if v is None or v is False or v == "" or v == []:
        return None
    return v
