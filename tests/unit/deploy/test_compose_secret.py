"""docker-compose.yml never supplies a placeholder admin secret: the variable is required."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def test_compose_requires_admin_jwt_secret() -> None:
    """Every service that sets ADMIN_JWT_SECRET uses ${ADMIN_JWT_SECRET:?...} (compose stops with
    the message when it is unset or empty), never a default such as ${ADMIN_JWT_SECRET:-change-me}."""
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    seen = 0
    for name, svc in doc["services"].items():
        value = (svc.get("environment") or {}).get("ADMIN_JWT_SECRET")
        if value is None:
            continue
        seen += 1
        assert re.fullmatch(r"\$\{ADMIN_JWT_SECRET:\?[^}]+\}", str(value)), (name, value)
    assert seen >= 2  # both workers
