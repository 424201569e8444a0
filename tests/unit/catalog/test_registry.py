"""Unit tests for processor/catalog/registry.py and processor/catalog/entry.py.

The registry folds catalog-log entries in order; it must be idempotent per
command_id (first entry wins), ignore already-applied offsets, apply only
ACCEPTED entries, and keep each site's state separate. CatalogEntry is the
log record and must round trip through encode/decode.
"""

from __future__ import annotations

import json

import pytest

from processor.catalog.commands import REMOVE_ALL, RECONCILE, BackfillPlan
from processor.catalog.entry import CatalogEntry
from processor.catalog.registry import CatalogRegistry
from processor.contract.models import Actor, Command

SALES_COND = json.dumps({"field": "department", "op": "equals", "value": "Sales"})


def command(command_id: str, payload_type: str, site: str = "site-a", roles=("site_admin",), **payload) -> Command:
    return Command(command_id, site, 1000, Actor("adm", tuple(roles)), payload_type, payload)


def entry(cmd: Command, status: str = "ACCEPTED", code=None, message=None, backfill=None,
          partition: int = 0, offset: int = 0) -> CatalogEntry:
    return CatalogEntry(cmd, status, code, message, 5000, partition, offset, backfill)


def seed(reg: CatalogRegistry, site: str = "site-a", start: int = 0) -> int:
    """Fold: segment sales, enable it, rule r1. Returns the next free log offset."""
    cmds = [
        command(f"{site}-c1", "UpsertSegment", site, segment_id="sales", name="Sales"),
        command(f"{site}-c2", "EnableSegmentAutomation", site, segment_id="sales"),
        command(f"{site}-c3", "CreateRule", site, rule_id="r1", segment_id="sales", name="r1",
                condition_json=SALES_COND, enabled=True),
    ]
    for i, c in enumerate(cmds):
        assert reg.apply_entry(start + i, entry(c, offset=start + i)) is True
    return start + len(cmds)


def test_unknown_site_is_empty_and_not_stored():
    """site() of a never-seen site is an empty catalog and does not create one."""
    reg = CatalogRegistry()
    cat = reg.site("nowhere")
    assert cat.site_id == "nowhere"
    assert not cat.segments and not cat.rules and not cat.active
    assert "nowhere" not in reg.sites


def test_accepted_entries_are_applied_in_order():
    """Folding accepted entries builds the catalog: segment managed, rule active."""
    reg = CatalogRegistry()
    nxt = seed(reg)
    cat = reg.site("site-a")
    assert cat.segments["sales"].managed
    assert [r for r, _ in cat.active["sales"]] == ["r1"]
    assert reg.applied_offset == nxt - 1


def test_rejected_entries_are_recorded_not_applied():
    """A REJECTED entry is remembered (to answer duplicates) but changes no catalog state."""
    reg = CatalogRegistry()
    c = command("c-bad", "UpsertSegment", segment_id="ops", name="Ops")
    assert reg.apply_entry(0, entry(c, "REJECTED", "FORBIDDEN", "nope")) is True
    cat = reg.site("site-a")
    assert "ops" not in cat.segments
    rec = reg.command("site-a", "c-bad")
    assert (rec.status, rec.code, rec.message) == ("REJECTED", "FORBIDDEN", "nope")


def test_duplicate_command_id_first_wins():
    """A second entry with an already-seen command_id (later offset) is ignored: returns False, no change."""
    reg = CatalogRegistry()
    first = command("c-1", "UpsertSegment", segment_id="ops", name="Ops")
    again = command("c-1", "UpsertSegment", segment_id="ops", name="Renamed")
    assert reg.apply_entry(0, entry(first, offset=10)) is True
    assert reg.apply_entry(1, entry(again, offset=11)) is False
    cat = reg.site("site-a")
    assert cat.segments["ops"].name == "Ops"
    assert reg.command("site-a", "c-1").source_offset == 10


def test_duplicate_of_rejected_command_stays_rejected():
    """If a command id was first rejected, a later accepted entry with the same id does not apply."""
    reg = CatalogRegistry()
    c = command("c-1", "UpsertSegment", segment_id="ops", name="Ops")
    reg.apply_entry(0, entry(c, "REJECTED", "FORBIDDEN", "no"))
    assert reg.apply_entry(1, entry(c)) is False
    assert "ops" not in reg.site("site-a").segments


def test_old_offsets_are_ignored():
    """Entries at or below the last applied offset (log re-read) are skipped."""
    reg = CatalogRegistry()
    reg.apply_entry(5, entry(command("c-1", "UpsertSegment", segment_id="a", name="A")))
    assert reg.apply_entry(5, entry(command("c-2", "UpsertSegment", segment_id="b", name="B"))) is False
    assert reg.apply_entry(3, entry(command("c-3", "UpsertSegment", segment_id="c", name="C"))) is False
    assert set(reg.site("site-a").segments) == {"a"}
    assert reg.applied_offset == 5


def test_command_id_idempotence_is_per_site():
    """The same command_id on two sites is two commands; each site gets its own."""
    reg = CatalogRegistry()
    reg.apply_entry(0, entry(command("c-1", "UpsertSegment", "site-a", segment_id="x", name="X")))
    assert reg.apply_entry(1, entry(command("c-1", "UpsertSegment", "site-b", segment_id="y", name="Y"))) is True
    assert set(reg.site("site-a").segments) == {"x"}
    assert set(reg.site("site-b").segments) == {"y"}


def test_sites_are_isolated():
    """One site's commands never touch another site's state."""
    reg = CatalogRegistry()
    nxt = seed(reg, "site-a")
    seed(reg, "site-b", nxt)
    reg.apply_entry(100, entry(command("kill", "DeleteSegment", "site-b", segment_id="sales")))
    assert "sales" in reg.site("site-a").segments
    assert [r for r, _ in reg.site("site-a").active["sales"]] == ["r1"]
    assert "sales" not in reg.site("site-b").segments


def test_command_record_keeps_source_offsets_and_backfill():
    """The command record stores source partition/offset, catalog offset and the backfill plan."""
    reg = CatalogRegistry()
    plan = BackfillPlan("SEGMENT_DELETED", (("sales", REMOVE_ALL),))
    nxt = seed(reg)
    c = command("c-del", "DeleteSegment", segment_id="sales")
    reg.apply_entry(nxt, entry(c, backfill=plan, partition=2, offset=77))
    rec = reg.command("site-a", "c-del")
    assert (rec.source_partition, rec.source_offset, rec.catalog_offset) == (2, 77, nxt)
    assert rec.backfill == plan


# ------------------------------------------------------------- CatalogEntry


@pytest.mark.parametrize("backfill", [None, BackfillPlan("RULE_UPDATED", (("a", RECONCILE), ("b", REMOVE_ALL)))])
@pytest.mark.parametrize("status,code,message", [("ACCEPTED", None, None), ("REJECTED", "NOT_FOUND", "rule 'x'")])
def test_catalog_entry_round_trip(backfill, status, code, message):
    """CatalogEntry.encode/decode round trips every field, including the command payload and plan."""
    cmd = command("c-9", "CreateRule", "site-ü", roles=("site_admin", "system"), rule_id="r", segment_id="s",
                  name="n", condition_json=SALES_COND, enabled=True)
    e = CatalogEntry(cmd, status, code, message, 123456, 3, 999, backfill)
    assert CatalogEntry.decode(e.encode()) == e


def test_catalog_entry_encoding_is_deterministic():
    """Encoding the same entry twice yields the same bytes (log records are comparable)."""
    cmd = command("c-9", "DisableSegmentAutomation", segment_id="s", remove_members=True)
    e1 = CatalogEntry(cmd, "ACCEPTED", None, None, 1, 0, 0, None)
    e2 = CatalogEntry(Command.from_dict(cmd.to_dict()), "ACCEPTED", None, None, 1, 0, 0, None)
    assert e1.encode() == e2.encode()


def test_folding_decoded_entries_equals_folding_originals():
    """A worker replaying the catalog log (decoded entries) builds the same catalog as the writer."""
    cmds = [
        command("c1", "UpsertProfileField", roles=("system",), shortname="team", name="Team", datatype="MENU",
                options=["Red", "Blue"]),
        command("c2", "UpsertSegment", segment_id="sales", name="Sales"),
        command("c3", "EnableSegmentAutomation", segment_id="sales"),
        command("c4", "CreateRule", rule_id="r1", segment_id="sales", name="r1",
                condition_json=json.dumps({"field": "profile_field_team", "op": "equals", "value": "Red"}),
                enabled=True),
        command("c5", "DeleteProfileField", shortname="team"),
    ]
    a, b = CatalogRegistry(), CatalogRegistry()
    for i, c in enumerate(cmds):
        e = entry(c, offset=i)
        a.apply_entry(i, e)
        b.apply_entry(i, CatalogEntry.decode(e.encode()))
    ca, cb = a.site("site-a"), b.site("site-a")
    assert ca.fields == cb.fields
    assert ca.segments == cb.segments
    assert ca.rules == cb.rules
    assert list(a.commands) == list(b.commands)
    assert cb.rule_status("r1") == "broken"
    assert cb.active == {"sales": ()}
