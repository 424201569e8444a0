"""Hostile and extreme rule values (issue 17): every one is a rule error with a code and a JSON path.

Spec: the ``on`` operator with the date 9999-12-31 raised OverflowError; the timezone "America"
raised IsADirectoryError and a 5,000-character timezone an OSError whose message showed a server
path. Afterwards any error while validating or compiling a value is a RuleError (INVALID_VALUE)
at the value's path, its message names no server path, and the worker's decide() answers
REJECTED (so ``dry_run`` answers 422 and the command gets a result). The audit covers every
kind of value: dates and epoch seconds, timezones, durations, numbers (NaN, infinities, integers
beyond the float range), regular expressions and lists. A datetime profile value outside the
calendar is unset, so a time-relative rule's next transition always fits a timer key.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import tzdata

from processor.catalog.active import ActiveRuleSet
from processor.catalog.commands import decide
from processor.catalog.model import Segment, SiteCatalog
from processor.contract.models import Actor, Command, UserEvent
from processor.membership.engine import apply_user_event
from processor.rules.compiler import compile_condition
from processor.rules.exceptions import CompileError
from processor.rules.fields import FieldSpec, FieldType, StaticFields
from processor.state.keys import timer_key
from processor.state.user_state import decode_state, encode_state

FIELDS = StaticFields({"profile_field_score": FieldSpec("profile_field_score", FieldType.NUMBER, (), True)})
TZ_DIR = str(Path(tzdata.__file__).parent)


def _epoch(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp())


def rejected(leaf: dict) -> tuple[str, str, str]:
    """(code, path, message) of the only error compiling ``leaf``."""
    with pytest.raises(CompileError) as info:
        compile_condition(leaf, FIELDS)
    (err,) = info.value.errors
    assert TZ_DIR not in err.message and "Errno" not in err.message
    return err.code, err.path, err.message


# ------------------------------------------------------------------ on: dates and timezones


def test_on_the_last_day_of_the_calendar_compiles_and_matches_that_day():
    """9999-12-31 is a date: the rule compiles (it raised OverflowError) and matches that UTC day only."""
    cond = compile_condition({"field": "lastlogin", "op": "on", "value": "9999-12-31"}, FIELDS)
    assert cond.evaluate({"lastlogin": _epoch("9999-12-31T12:00:00")})
    assert cond.evaluate({"lastlogin": _epoch("9999-12-31T23:59:59")})
    assert not cond.evaluate({"lastlogin": _epoch("9999-12-30T23:59:59")})


def test_on_the_last_day_in_a_timezone_west_of_utc():
    """The last calendar day in New York starts 5 hours after UTC's (the end is start + 24 h)."""
    cond = compile_condition({"field": "lastlogin", "op": "on",
                              "value": {"date": "9999-12-31", "timezone": "America/New_York"}}, FIELDS)
    assert cond.evaluate({"lastlogin": _epoch("9999-12-31T05:00:00")})
    assert not cond.evaluate({"lastlogin": _epoch("9999-12-31T04:59:59")})


@pytest.mark.parametrize("tz", ["America", "Europe", "Etc", "posix", "right", "zone.tab", "tzdata.zi",
                                "__init__.py", "/etc/localtime", "../../etc/passwd", "Europe/Paris\x00",
                                "Europe/Paris\ud800", "europe/paris", "Europe//Paris", "."])
def test_timezone_that_is_not_a_zone_is_invalid_value(tz):
    """Directories, data files, paths and near misses of the tz database are INVALID_VALUE at
    ``$.value.timezone`` (a directory raised IsADirectoryError)."""
    code, path, message = rejected({"field": "lastlogin", "op": "on", "value": {"date": "2026-01-31", "timezone": tz}})
    assert (code, path) == ("INVALID_VALUE", "$.value.timezone")
    assert "unknown IANA timezone" in message


def test_five_thousand_character_timezone_is_a_short_error_without_a_path():
    """A 5,000-character timezone raised OSError showing the server's tz directory; now a short
    INVALID_VALUE that echoes only the start of the name."""
    code, path, message = rejected({"field": "lastlogin", "op": "on",
                                     "value": {"date": "2026-01-31", "timezone": "x" * 5000}})
    assert (code, path) == ("INVALID_VALUE", "$.value.timezone")
    assert len(message) < 200


@pytest.mark.parametrize("tz", [5, 1.5, True, ["Europe/Paris"], {"name": "UTC"}])
def test_timezone_that_is_not_a_string_is_invalid_value(tz):
    """A non-string timezone names the expected form instead of looking up str(tz)."""
    code, path, message = rejected({"field": "lastlogin", "op": "on", "value": {"date": "2026-01-31", "timezone": tz}})
    assert (code, path) == ("INVALID_VALUE", "$.value.timezone")
    assert "IANA name" in message


def test_real_timezones_still_work():
    """Every zone of the tz database compiles; the day starts at local midnight."""
    cond = compile_condition({"field": "lastlogin", "op": "on",
                              "value": {"date": "2026-01-31", "timezone": "Asia/Kathmandu"}}, FIELDS)
    start = _epoch("2026-01-30T18:15:00")  # UTC+05:45
    assert cond.evaluate({"lastlogin": start}) and not cond.evaluate({"lastlogin": start - 1})


@pytest.mark.parametrize("date", ["10000-01-01", "2026-02-30", "0000-01-01", 20260131, None])
def test_bad_date_in_object_form_points_at_the_date(date):
    """In the object form, a bad date is reported at ``$.value.date``."""
    code, path, _ = rejected({"field": "lastlogin", "op": "on", "value": {"date": date, "timezone": "UTC"}})
    assert (code, path) == ("INVALID_VALUE", "$.value.date")


# ------------------------------------------------------------------ epoch values


@pytest.mark.parametrize("value", [10 ** 400, 2 ** 63, -(10 ** 20), 253402300800, -62135596801,
                                   "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", 1e300,
                                   float("inf"), float("nan")])
def test_datetime_value_outside_the_calendar_is_invalid_value(value):
    """Epoch seconds and ISO datetimes must fall within 0001-01-01..9999-12-31 UTC."""
    code, path, _ = rejected({"field": "lastlogin", "op": "before", "value": value})
    assert (code, path) == ("INVALID_VALUE", "$.value")
    code, path, _ = rejected({"field": "lastlogin", "op": "between", "value": [0, value]})
    assert (code, path) == ("INVALID_VALUE", "$.value[1]")


@pytest.mark.parametrize("value", [253402300799, -62135596800, "9999-12-31T23:59:59Z", "0001-01-01"])
def test_datetime_value_at_the_calendar_bounds_compiles(value):
    """The bounds themselves are accepted."""
    compile_condition({"field": "lastlogin", "op": "after", "value": value}, FIELDS)


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 10 ** 400, -(2 ** 1024)])
@pytest.mark.parametrize("op", ["equals", "not_equals", "lt", "lte", "gt", "gte"])
def test_number_that_is_not_finite_is_invalid_value(op, value):
    """NaN, infinities and integers beyond the float range (OverflowError) are INVALID_VALUE."""
    code, path, _ = rejected({"field": "profile_field_score", "op": op, "value": value})
    assert (code, path) == ("INVALID_VALUE", "$.value")


@pytest.mark.parametrize("value", [[0, 10 ** 400], [float("-inf"), 5], [1, float("nan")]])
def test_number_range_with_a_bad_bound_is_invalid_value(value):
    """``between`` checks each bound; the path names the bad one."""
    code, path, _ = rejected({"field": "profile_field_score", "op": "between", "value": value})
    assert code == "INVALID_VALUE" and path.startswith("$.value[")


def test_large_finite_number_still_compiles():
    """1e308 and 2**1000 are finite floats: accepted."""
    compile_condition({"field": "profile_field_score", "op": "lt", "value": 2 ** 1000}, FIELDS)
    compile_condition({"field": "profile_field_score", "op": "gt", "value": 1e308}, FIELDS)


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize("value", ["P" + "9" * 5000 + "D", "PT" + "1" * 4400 + "S", "P" + "0" * 100 + "1D"])
def test_duration_with_thousands_of_digits_is_invalid_value(value):
    """int() refuses more than 4,300 digits (ValueError); the duration's length is bounded first."""
    code, path, message = rejected({"field": "lastlogin", "op": "within_last", "value": value})
    assert (code, path) == ("INVALID_VALUE", "$.value")
    assert len(message) < 200


@pytest.mark.parametrize("value", ["P١٢D", "P１D", "P30D\n\nX"])
def test_duration_with_non_ascii_digits_is_invalid_value(value):
    """Only ASCII digits: "P١٢D" (Arabic-Indic digits) was read as 12 days."""
    code, path, _ = rejected({"field": "lastlogin", "op": "more_than_ago", "value": value})
    assert (code, path) == ("INVALID_VALUE", "$.value")


# ------------------------------------------------------------------ regular expressions and lists


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb"])
def test_regex_with_a_lone_surrogate_is_invalid_value(value):
    """A lone surrogate has no UTF-8 form: RE2 raised UnicodeEncodeError."""
    code, path, _ = rejected({"field": "department", "op": "matches", "value": value})
    assert (code, path) == ("INVALID_VALUE", "$.value")


def test_regex_too_large_for_re2_is_invalid_value():
    """A pattern over RE2's memory budget is INVALID_VALUE, not a crash."""
    code, path, _ = rejected({"field": "department", "op": "matches", "value": "(((a{100}){100}){100})"})
    assert (code, path) == ("INVALID_VALUE", "$.value")


def test_list_with_a_non_text_item_is_invalid_value():
    """A non-string item in ``in`` (here an integer beyond the float range) is INVALID_VALUE."""
    code, path, _ = rejected({"field": "department", "op": "in", "value": ["Sales", 10 ** 400]})
    assert (code, path) == ("INVALID_VALUE", "$.value")


# ------------------------------------------------------------------ decide (dry_run and the worker)


def _create_rule(value: object) -> Command:
    cond = {"field": "lastlogin", "op": "on", "value": value}
    return Command("c1", "site-a", 1, Actor("admin", ("site_admin",)), "CreateRule",
                   {"rule_id": "r1", "segment_id": "s", "name": "r", "condition_json": json.dumps(cond),
                    "enabled": True})


@pytest.mark.parametrize("tz", ["America", "x" * 5000])
def test_decide_rejects_a_bad_timezone_with_its_path(tz):
    """What dry_run and the worker run: REJECTED INVALID_VALUE at the value's path (it raised, so
    dry_run answered 500 and the command was dead-lettered without a result)."""
    site = SiteCatalog("site-a")
    site.segments["s"] = Segment("s", "S", managed=True)
    d = decide(site, _create_rule({"date": "2026-01-31", "timezone": tz}), "site-a")
    assert (d.status, d.code, d.path) == ("REJECTED", "INVALID_VALUE", "$.payload.condition_json.value.timezone")
    assert TZ_DIR not in d.message


# ------------------------------------------------------------------ datetime profile values


@pytest.mark.parametrize("op", ["within_last", "more_than_ago", "in_future", "in_past"])
@pytest.mark.parametrize("value", [1e300, 2 ** 63 - 1, -(2 ** 63), float("inf"), 9.3e18])
def test_profile_datetime_outside_the_calendar_is_unset(op, value):
    """A user event whose datetime is far outside the calendar: the time-relative rule treats it as
    unset, and the next check fits a timer key and the stored state (1e300 raised OverflowError
    while scheduling, which dead-lettered the event)."""
    leaf = {"field": "lastlogin", "op": op}
    if op in ("within_last", "more_than_ago"):
        leaf["value"] = "P30D"
    cond = compile_condition(leaf, FIELDS)
    assert cond.evaluate({"lastlogin": value}) is False
    ev = UserEvent("e1", "USER_CREATED", "site-a", "u1", 1, {"lastlogin": value})
    out = apply_user_event(None, ev, 0, ActiveRuleSet.build({"seg": (("r", cond),)}), 1_700_000_000_000)
    assert decode_state(encode_state(out.state)).profile["lastlogin"] == value
    if out.timer and out.timer[1]:
        timer_key(out.timer[1], b"k")
    assert out.state.next_check_at == 0
