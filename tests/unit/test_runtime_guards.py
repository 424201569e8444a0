"""Start-up refusals of the runtime: an untested faust-streaming, an unknown broker profile; and
what the profiles set (processor/runtime/faust_compat.py, broker_profile.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from processor.config import Settings
from processor.runtime import broker_profile, faust_compat

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_versions_are_the_tested_ones() -> None:
    faust_compat.check_versions()  # raises if constraints.txt and TESTED disagree with the venv


def test_an_untested_faust_version_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust_compat, "version", lambda package: "0.15.9" if package == "faust-streaming" else
                        faust_compat.TESTED[package][0])
    with pytest.raises(faust_compat.UntestedDependency) as err:
        faust_compat.check_versions()
    assert err.value.code == "UNTESTED_DEPENDENCY"
    assert "faust-streaming 0.15.9" in err.value.message and "0.15.3" in err.value.message
    assert "constraints.txt" in err.value.message


def test_the_tested_versions_are_the_pinned_ones() -> None:
    """constraints.txt pins exactly the versions faust_compat was verified against."""
    pins = dict(re.findall(r"^([\w.-]+)==([\w.]+)$", (ROOT / "constraints.txt").read_text(), re.M))
    for package, tested in faust_compat.TESTED.items():
        assert pins[package] in tested, package


def test_a_worker_refuses_to_start_on_an_untested_faust(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from processor import worker

    monkeypatch.setattr(faust_compat, "_APPLIED", False)
    monkeypatch.setattr(faust_compat, "version", lambda package: "0.16.0")
    with pytest.raises(SystemExit) as exit_:
        worker.start_or_refuse(Settings(), json_logs=False)
    assert exit_.value.code == 2
    assert "refusing to start" in caplog.text and "faust-streaming 0.16.0" in caplog.text


def test_broker_profiles() -> None:
    kafka = broker_profile.profile_for(Settings())
    assert kafka == broker_profile.KAFKA and kafka.records_per_batch is None
    tansu = broker_profile.profile_for(Settings(broker_quirks=frozenset({"tansu"})))
    assert tansu.records_per_batch == 1 and tansu.fetch_max_wait_ms == 50 and tansu.high_watermark_underreports
    assert broker_profile.fetch_max_wait_ms(Settings(), tansu) == 50
    assert broker_profile.fetch_max_wait_ms(Settings(fetch_max_wait_ms=10), tansu) == 10
    assert broker_profile.fetch_max_wait_ms(Settings(), kafka) is None


def test_an_unknown_broker_profile_is_refused() -> None:
    with pytest.raises(broker_profile.UnknownBrokerProfile) as err:
        broker_profile.profile_for(Settings(broker_quirks=frozenset({"redpanda"})))
    assert err.value.code == "UNKNOWN_BROKER_QUIRKS" and "redpanda" in err.value.message
    assert err.value.path == "$env.BROKER_QUIRKS"


def test_only_the_profile_and_the_embedded_broker_name_a_broker() -> None:
    """Runtime code reads the profile's flags; the test broker is named in two files only."""
    named = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "processor").rglob("*.py")
                   if "tansu" in p.read_text(encoding="utf-8").lower())
    assert named == ["processor/broker.py", "processor/runtime/broker_profile.py"]


def test_only_faust_compat_and_the_store_touch_table_internals() -> None:
    pattern = re.compile(r"_db_for_partition|_committed_offset|_dbs\b")
    hits = sorted({p.relative_to(ROOT).as_posix() for p in (ROOT / "processor").rglob("*.py")
                   if pattern.search(p.read_text(encoding="utf-8"))})
    assert set(hits) <= {"processor/runtime/faust_compat.py", "processor/runtime/store.py"}


def test_architecture_doc_lists_every_faust_patch() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for patch in faust_compat.PATCHES:
        assert f"`{patch}`" in doc, patch
    module = (ROOT / "processor" / "runtime" / "faust_compat.py").read_text(encoding="utf-8")
    for patch in faust_compat.PATCHES:
        assert f"``{patch}``" in module, patch
