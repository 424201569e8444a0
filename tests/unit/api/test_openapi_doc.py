"""docs/openapi.json is the spec every worker serves at /openapi.json, not a stale copy."""

import json
from pathlib import Path

from processor.api.openapi import spec

DOC = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_docs_openapi_json_is_the_served_spec() -> None:
    """Other teams read the committed file: a route or field added to the served spec without
    regenerating it (``python -m processor.api.openapi > docs/openapi.json``) fails here."""
    assert json.loads(DOC.read_text()) == spec()
