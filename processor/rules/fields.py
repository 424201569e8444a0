"""Profile field types and Moodle's standard user fields.

Standard fields are known without any catalog command; custom fields are
declared by ``UpsertProfileField`` and appear in profiles as
``profile_field_<shortname>`` (Moodle's own convention).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping, Protocol

CUSTOM_PREFIX = "profile_field_"


class FieldType(str, enum.Enum):
    TEXT = "TEXT"
    TEXTAREA = "TEXTAREA"
    MENU = "MENU"
    MULTISELECT = "MULTISELECT"
    CHECKBOX = "CHECKBOX"
    DATETIME = "DATETIME"
    NUMBER = "NUMBER"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """What the compiler knows about a field: name as in profiles, type, menu options."""

    name: str
    type: FieldType
    options: tuple[str, ...] = field(default=())
    custom: bool = False


_T = FieldType
STANDARD_FIELDS: Mapping[str, FieldType] = {
    "username": _T.TEXT,
    "email": _T.TEXT,
    "firstname": _T.TEXT,
    "lastname": _T.TEXT,
    "middlename": _T.TEXT,
    "alternatename": _T.TEXT,
    "firstnamephonetic": _T.TEXT,
    "lastnamephonetic": _T.TEXT,
    "idnumber": _T.TEXT,
    "institution": _T.TEXT,
    "department": _T.TEXT,
    "phone1": _T.TEXT,
    "phone2": _T.TEXT,
    "address": _T.TEXT,
    "city": _T.TEXT,
    "country": _T.TEXT,
    "lang": _T.TEXT,
    "timezone": _T.TEXT,
    "theme": _T.TEXT,
    "calendartype": _T.TEXT,
    "auth": _T.TEXT,
    "description": _T.TEXTAREA,
    "suspended": _T.CHECKBOX,
    "confirmed": _T.CHECKBOX,
    "timecreated": _T.DATETIME,
    "timemodified": _T.DATETIME,
    "firstaccess": _T.DATETIME,
    "lastaccess": _T.DATETIME,
    "lastlogin": _T.DATETIME,
    "currentlogin": _T.DATETIME,
    "interests": _T.MULTISELECT,
}


# How the admin console groups and labels standard fields (Moodle's own labels).
STANDARD_FIELD_INFO: Mapping[str, tuple[str, str]] = {
    "username": ("Identity", "Username"),
    "email": ("Identity", "Email address"),
    "idnumber": ("Identity", "ID number"),
    "auth": ("Identity", "Authentication method"),
    "firstname": ("Name", "First name"),
    "lastname": ("Name", "Last name"),
    "middlename": ("Name", "Middle name"),
    "alternatename": ("Name", "Alternate name"),
    "firstnamephonetic": ("Name", "First name - phonetic"),
    "lastnamephonetic": ("Name", "Last name - phonetic"),
    "institution": ("Organisation", "Institution"),
    "department": ("Organisation", "Department"),
    "phone1": ("Contact", "Phone"),
    "phone2": ("Contact", "Mobile phone"),
    "address": ("Contact", "Address"),
    "city": ("Contact", "City/town"),
    "country": ("Contact", "Country"),
    "lang": ("Preferences", "Preferred language"),
    "timezone": ("Preferences", "Timezone"),
    "theme": ("Preferences", "Preferred theme"),
    "calendartype": ("Preferences", "Calendar type"),
    "description": ("Profile", "Description"),
    "interests": ("Profile", "Interests"),
    "suspended": ("Account", "Suspended account"),
    "confirmed": ("Account", "Confirmed"),
    "timecreated": ("Activity", "Time created"),
    "timemodified": ("Activity", "Time modified"),
    "firstaccess": ("Activity", "First access"),
    "lastaccess": ("Activity", "Last access"),
    "lastlogin": ("Activity", "Last login"),
    "currentlogin": ("Activity", "Current login"),
}


class FieldResolver(Protocol):
    """Anything that can tell the compiler what a profile key is (a site catalog)."""

    def resolve_field(self, name: str) -> FieldSpec | None: ...

    def known_field_names(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class StaticFields:
    """A resolver over standard fields plus a given set of custom fields (tests, tools)."""

    custom: Mapping[str, FieldSpec] = field(default_factory=dict)

    def resolve_field(self, name: str) -> FieldSpec | None:
        if name in STANDARD_FIELDS:
            return FieldSpec(name, STANDARD_FIELDS[name])
        return self.custom.get(name)

    def known_field_names(self) -> list[str]:
        return [*STANDARD_FIELDS, *self.custom]
