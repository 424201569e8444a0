"""The CLI's pure parts: error lines, times, the default site, typed user values, command files."""

from __future__ import annotations

import datetime as dt
import os
import time

import click
import pytest

from processor.api.auth import make_token
from processor.cli_support import error_text, iso_time, resolve_site, token_site
from processor.errors import ProcessorError
from processor.publish import CommandFileError, encoded_commands, load_commands
from processor.rules.fields import FieldType
from processor.state.user_state import UserState, encode_state, is_deleted
from processor.users_cli import FieldInfo, epoch_seconds, parse_assignments, standard_catalog

SECRET = "unit-test-secret-0123456789-abcdefghij"


# ----------------------------------------------------------------- error lines and times

def test_an_error_without_a_path_has_no_empty_at() -> None:
    assert str(ProcessorError("API_UNREACHABLE", "no worker", "")) == "API_UNREACHABLE: no worker"
    assert str(ProcessorError("INVALID_ID", "bad", "$.rule_id")) == "INVALID_ID at $.rule_id: bad"
    assert error_text("X", "m", "") == "X: m" and error_text("X", "m", None) == "X: m"


def test_times_are_iso_8601_with_the_local_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert iso_time(1714521600000) == "2024-05-01T05:30:00+05:30"
        assert dt.datetime.fromisoformat(iso_time(1714521600000)).timestamp() == 1714521600
        assert iso_time(None) == "-"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# ------------------------------------------------------------------------ --site default

def test_site_defaults_to_the_tokens_site(monkeypatch: pytest.MonkeyPatch) -> None:
    token = make_token(SECRET, "alice", "acme", ["site_admin"])
    assert token_site(token) == "acme" and token_site("not a jwt") is None and token_site(None) is None
    monkeypatch.setenv("ADMIN_TOKEN", token)
    ctx = click.Context(click.Command("x"))
    assert resolve_site(ctx, None, None) == "acme"  # type: ignore[arg-type]
    assert resolve_site(ctx, None, "other") == "other"  # type: ignore[arg-type]
    monkeypatch.delenv("ADMIN_TOKEN")
    with pytest.raises(click.UsageError, match="--site"):
        resolve_site(ctx, None, None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- typed values

CATALOG = {**standard_catalog(),
           "profile_field_level": FieldInfo("profile_field_level", FieldType.MENU, ("Junior", "Senior")),
           "profile_field_score": FieldInfo("profile_field_score", FieldType.NUMBER),
           "profile_field_mentor": FieldInfo("profile_field_mentor", FieldType.CHECKBOX),
           "profile_field_hired": FieldInfo("profile_field_hired", FieldType.DATETIME),
           "profile_field_skills": FieldInfo("profile_field_skills", FieldType.MULTISELECT, ("a", "b"))}
NOW = 1_714_521_600.0  # 2024-05-01T00:00:00Z


def test_values_take_the_type_of_their_field() -> None:
    profile, problems, notes = parse_assignments(
        ["department=Sales", "profile_field_score=42", "profile_field_mentor=yes", "suspended=false",
         "profile_field_hired=2024-05-01", "lastaccess=now-P3D", "firstaccess=2024-05-01T09:30:00+02:00",
         "timecreated=1714521600", "interests=golf, chess", "profile_field_skills=[\"a\"]", "city=",
         "profile_field_level=Senior", "idnumber:=null", "phone1:=12"], CATALOG, now=NOW)
    assert problems == [] and notes == []
    assert profile == {
        "department": "Sales", "profile_field_score": 42, "profile_field_mentor": True, "suspended": False,
        "profile_field_hired": 1714521600, "lastaccess": 1714521600 - 3 * 86400,
        "firstaccess": 1714548600, "timecreated": 1714521600, "interests": ["golf", "chess"],
        "profile_field_skills": ["a"], "city": "", "profile_field_level": "Senior", "idnumber": None,
        "phone1": 12}
    assert parse_assignments(["profile_field_score=1.5"], CATALOG)[0] == {"profile_field_score": 1.5}


def test_bad_values_are_all_reported_with_what_the_field_takes() -> None:
    profile, problems, notes = parse_assignments(
        ["profile_field_score=many", "profile_field_mentor=maybe", "lastaccess=yesterday", "departmnt=x",
         "level=Senior", "novalue", "x:={bad json", "profile_field_level=Boss", "team=Red"], CATALOG, now=NOW)
    assert [p.split(":")[0] for p in problems] == [
        "profile_field_score (number)", "profile_field_mentor (checkbox)", "lastaccess (datetime)", "departmnt",
        "level", "'novalue'", "x (field)"]
    assert "did you mean department" in problems[3] and "profile_field_level" in problems[4]
    assert "write true or false" in problems[1] and "2024-05-01" in problems[2]
    assert any("not one of the menu's options" in n for n in notes)
    assert any(n.startswith("team: not in the field catalog, sent as text") for n in notes)
    assert profile == {"profile_field_level": "Boss", "team": "Red"}


def test_now_and_durations() -> None:
    assert epoch_seconds("now", NOW) == int(NOW)
    assert epoch_seconds("now+PT2H", NOW) == int(NOW) + 7200
    with pytest.raises(ValueError, match="duration"):
        epoch_seconds("now-P1M", NOW)


# ------------------------------------------------------------------------- command files

BAD_FILE = """
site_id: demo
actor: {user_id: admin, roles: [site_admin]}
commands:
  - UpsertProfileField: {shortname: level, name: Level, datatype: DROPDOWN}
  - UpsertProfileField: {shortname: team, name: Team, datatype: TEXTT, options: nope}
  - CreateRule: {rule_id: sales dept!, segment_id: s, name: x, condition: 'department =='}
  - UpsertSegmnt: {segment_id: s, name: S}
  - UpsertSegment: {segment_id: s, nme: S}
"""


def test_a_command_file_reports_every_problem_at_its_path() -> None:
    with pytest.raises(CommandFileError) as exc:
        load_commands(BAD_FILE)
    got = [(e.path, e.message) for e in exc.value.errors]
    paths = [p for p, _ in got]
    assert paths == ["$.commands[0].UpsertProfileField.datatype", "$.commands[1].UpsertProfileField.datatype",
                     "$.commands[1].UpsertProfileField.options", "$.commands[2].CreateRule.condition",
                     "$.commands[2].CreateRule.rule_id", "$.commands[3]", "$.commands[4].UpsertSegment.name",
                     "$.commands[4].UpsertSegment.nme"]
    msgs = dict(got)
    assert "did you mean MENU" in msgs["$.commands[0].UpsertProfileField.datatype"]
    assert "did you mean TEXT" in msgs["$.commands[1].UpsertProfileField.datatype"]
    assert "column 13 of the text form" in msgs["$.commands[2].CreateRule.condition"]
    assert "found ' ' at position 5" in msgs["$.commands[2].CreateRule.rule_id"]
    assert "did you mean UpsertSegment" in msgs["$.commands[3]"]
    assert "did you mean 'name'" in msgs["$.commands[4].UpsertSegment.nme"]
    assert not any("Traceback" in m or "b'" in m for m in msgs.values())


def test_a_command_file_that_is_not_yaml_says_where() -> None:
    with pytest.raises(CommandFileError, match=r"not valid YAML or JSON \(line 3, column 1\)"):
        load_commands("site_id: s\ncommands: [\n")


def test_every_valid_file_encodes() -> None:
    cmds = load_commands("site_id: s\ncommands:\n  - UpsertProfileField: {shortname: level, name: L, "
                         "datatype: MENU, options: [a]}\n  - CreateRule: {rule_id: r, segment_id: s, name: R, "
                         "condition: 'department == \"x\"'}\n")
    assert len(encoded_commands(cmds)) == 2


# ------------------------------------------------------------------- stored users count

def test_is_deleted_reads_the_flag_without_decoding() -> None:
    for deleted in (False, True):
        for site, user in (("demo", "alice"), ("s" * 200, "u" * 300), ("é", "ü")):
            raw = encode_state(UserState(site, user, deleted=deleted, profile={"a": "b"}))
            assert is_deleted(raw) is deleted
    with pytest.raises(ValueError):
        is_deleted(b"\x09rest")


@pytest.fixture(autouse=True)
def _no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    assert "ADMIN_TOKEN" not in os.environ
