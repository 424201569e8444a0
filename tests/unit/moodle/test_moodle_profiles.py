"""Pure parts of the connector: profile conversion, field definitions, mapping, progress lines."""

from __future__ import annotations

import io
import json

import pytest

from processor.connectors.moodle.mapping import SiteMapping, parse_cohort_pairs
from processor.connectors.moodle.profiles import FieldCollector, parse_plugin_fields, to_profile
from processor.connectors.moodle.progress import Progress
from processor.errors import ProcessorError
from processor.rules.fields import FieldType

# A record as core_user_get_users_by_field returns it (user/externallib.php user_description).
MOODLE_USER = {
    "id": 7, "username": "alice", "firstname": "Alice", "lastname": "A", "fullname": "Alice A",
    "email": "a@example.org", "department": "Sales", "idnumber": "E-7", "interests": "chess, go",
    "firstaccess": 0, "lastaccess": 1764790000, "auth": "manual", "suspended": False, "confirmed": 1, "lang": "en",
    "timezone": "99", "mailformat": 1, "description": "<p>hi</p>", "descriptionformat": 1, "city": "Oslo",
    "country": "NO", "profileimageurl": "https://x/u/f1", "profileimageurlsmall": "https://x/u/f2",
    "customfields": [
        {"type": "menu", "value": "Senior", "name": "Level", "shortname": "level"},
        {"type": "checkbox", "value": "0", "name": "VIP", "shortname": "vip"},
        {"type": "datetime", "value": "1700000000", "name": "Hired", "shortname": "hired"},
        {"type": "social", "value": "@alice", "name": "Handle", "shortname": "handle"}],
}


def test_a_moodle_user_becomes_a_profile_with_moodles_names() -> None:
    assert to_profile(MOODLE_USER) == {
        "username": "alice", "email": "a@example.org", "firstname": "Alice", "lastname": "A", "idnumber": "E-7",
        "department": "Sales", "city": "Oslo", "country": "NO", "lang": "en", "timezone": "99", "auth": "manual",
        "description": "<p>hi</p>", "suspended": False, "confirmed": True, "firstaccess": 0,
        "lastaccess": 1764790000, "interests": ["chess", "go"], "profile_field_level": "Senior",
        "profile_field_vip": False, "profile_field_hired": 1700000000, "profile_field_handle": "@alice"}


def test_fields_derived_from_users_say_what_is_missing() -> None:
    c = FieldCollector()
    c.add([MOODLE_USER, {"customfields": [{"type": "menu", "value": "Junior", "name": "Level",
                                           "shortname": "level"}]}])
    fields = c.result()
    assert fields["level"].datatype is FieldType.MENU and fields["level"].options == ["Junior", "Senior"]
    assert not fields["level"].complete and fields["hired"].datatype is FieldType.DATETIME
    notes = " ".join(c.notes())
    assert "options nobody holds are missing" in notes and "local_segmentsync" in notes


def test_plugin_field_definitions_in_either_shape() -> None:
    got = parse_plugin_fields({"fields": [{"shortname": "level", "name": "Level", "datatype": "menu",
                                           "param1": "Junior\nSenior\n"},
                                          {"shortname": "n", "name": "N", "datatype": "NUMBER"}]})
    assert got["level"].options == ["Junior", "Senior"] and got["level"].complete
    assert got["n"].datatype is FieldType.NUMBER
    assert parse_plugin_fields([{"shortname": "t", "datatype": "text", "options": ["x"]}])["t"].options == []


def test_mapping() -> None:
    m = SiteMapping("s", "username", parse_cohort_pairs(["sales=COH-1"]))
    assert (m.cohort_for("sales"), m.cohort_for("hr"), m.segment_for("COH-1"), m.segment_for("hr")) == (
        "COH-1", "hr", "sales", "hr")
    assert m.segment_for("sales") == ""  # "sales" the cohort is not segment sales any more
    assert m.user_key(MOODLE_USER) == "alice"
    with pytest.raises(ProcessorError):
        SiteMapping("s", "email")
    with pytest.raises(ProcessorError):
        parse_cohort_pairs(["nosign"])
    with pytest.raises(ProcessorError):
        SiteMapping("s", "id", {"a": "x", "b": "x"})


def test_progress_is_json_lines_off_a_terminal() -> None:
    out = io.StringIO()
    with Progress(tty=False, stream=out) as p:
        p.task("users", total=10)
        p.advance("users", 4)
        p.advance("users", 6)
        p.finish("users")
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert lines[0]["progress"] == "users" and lines[-1]["done"] == 10 and lines[-1]["total"] == 10
    assert set(lines[0]) == {"progress", "done", "total", "rate_per_s", "eta_s"}
