"""Site settings (processor/catalog/settings.py) folded from SetSiteSettings commands: decided
(validation, role site_admin only), applied (null keeps a value), folded identically from the
catalog log, and carried by the Avro contract."""

from __future__ import annotations

import math

import pytest

from processor.catalog.commands import apply, decide
from processor.catalog.entry import CatalogEntry
from processor.catalog.model import SiteCatalog
from processor.catalog.registry import CatalogRegistry
from processor.catalog.settings import DEFAULTS, SiteSettings
from processor.contract.codec import decode_command, encode_command
from processor.contract.models import Actor, Command


def _set(roles: tuple[str, ...] = ("site_admin",), cid: str = "c1", **payload: object) -> Command:
    full = {"large_change_min_removed": None, "large_change_ratio": None, **payload}
    return Command(cid, "s", 1, Actor("admin", roles), "SetSiteSettings", full)


def test_defaults() -> None:
    assert SiteCatalog("s").settings == DEFAULTS == SiteSettings(50, 0.1)


def test_fold_keeps_what_a_command_leaves_null() -> None:
    cat = SiteCatalog("s")
    for c in (_set(large_change_min_removed=10), _set(large_change_ratio=0.25), _set(large_change_ratio=1)):
        assert decide(cat, c).accepted, decide(cat, c)
        apply(cat, c)
    assert cat.settings == SiteSettings(10, 1.0)
    assert isinstance(cat.settings.large_change_ratio, float)


@pytest.mark.parametrize("payload,path", [
    ({}, "$.payload"),
    ({"large_change_min_removed": -1}, "$.payload.large_change_min_removed"),
    ({"large_change_min_removed": 2**31}, "$.payload.large_change_min_removed"),
    ({"large_change_min_removed": True}, "$.payload.large_change_min_removed"),
    ({"large_change_ratio": 1.5}, "$.payload.large_change_ratio"),
    ({"large_change_ratio": -0.1}, "$.payload.large_change_ratio"),
    ({"large_change_ratio": math.nan}, "$.payload.large_change_ratio"),
    ({"large_change_ratio": math.inf}, "$.payload.large_change_ratio"),
])
def test_invalid_settings_are_rejected_at_the_field(payload: dict, path: str) -> None:  # type: ignore[type-arg]
    cat = SiteCatalog("s")
    d = decide(cat, _set(**payload))
    assert (d.status, d.code, d.path) == ("REJECTED", "INVALID_FIELD", path), d
    assert "SetSiteSettings" not in (d.message or "")  # says what to change, not the command's name


def test_only_a_site_admin_may_change_settings() -> None:
    for roles in (("system",), ("ingest",), ()):
        d = decide(SiteCatalog("s"), _set(roles, large_change_min_removed=1))
        assert (d.status, d.code) == ("REJECTED", "FORBIDDEN"), roles


def test_settings_come_back_from_the_catalog_log() -> None:
    """A worker that starts later folds the same settings from the logged entries."""
    reg = CatalogRegistry()
    c = _set(large_change_min_removed=7, large_change_ratio=0.5)
    entry = CatalogEntry(c, "ACCEPTED", None, None, 1, 0, 0, None)
    reg.apply_entry(0, CatalogEntry.decode(entry.encode()))
    assert reg.site("s").settings == SiteSettings(7, 0.5)
    assert reg.site("other").settings == DEFAULTS


def test_the_command_travels_in_avro() -> None:
    c = _set(large_change_ratio=0.3)
    back = decode_command(encode_command(c))
    assert (back.payload_type, back.payload) == ("SetSiteSettings", c.payload)
    # written with only one field, the other reads as its default (null)
    partial = Command("c2", "s", 1, Actor("a", ("site_admin",)), "SetSiteSettings", {"large_change_min_removed": 3})
    assert decode_command(encode_command(partial)).payload == {"large_change_min_removed": 3,
                                                               "large_change_ratio": None}
