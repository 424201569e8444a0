"""Unit tests for processor/catalog/authorize.py.

Spec (issue 2): rule and automation commands (Create/Update/DeleteRule,
Enable/DisableSegmentAutomation) need ``site_admin``; catalog commands
(profile fields, segments) accept ``site_admin`` or ``system``; everything
else is FORBIDDEN.
"""

from __future__ import annotations

import pytest

from processor.catalog.authorize import authorize
from processor.contract.models import Actor, Command

RULE_COMMANDS = ["CreateRule", "UpdateRule", "DeleteRule", "EnableSegmentAutomation", "DisableSegmentAutomation"]
CATALOG_COMMANDS = ["UpsertProfileField", "DeleteProfileField", "UpsertSegment", "DeleteSegment"]


def cmd(payload_type: str, roles: tuple[str, ...], user: str = "u-42") -> Command:
    return Command("c1", "site-a", 0, Actor(user, roles), payload_type, {})


@pytest.mark.parametrize("payload_type", RULE_COMMANDS + CATALOG_COMMANDS)
def test_site_admin_may_issue_every_command(payload_type):
    """A site_admin is authorized for every command type."""
    assert authorize(cmd(payload_type, ("site_admin",))) is None


@pytest.mark.parametrize("payload_type", RULE_COMMANDS)
@pytest.mark.parametrize("roles", [("system",), ("teacher",), (), ("manager", "editingteacher"), ("admin",),
                                   ("site_admin_x",)])
def test_rule_commands_need_site_admin(payload_type, roles):
    """Rule/automation commands from anyone but a site_admin (system included) are FORBIDDEN."""
    err = authorize(cmd(payload_type, roles))
    assert err is not None
    assert err.code == "FORBIDDEN"
    assert err.path == "$.actor.roles"
    assert payload_type in err.message
    assert "site_admin" in err.message


@pytest.mark.parametrize("payload_type", CATALOG_COMMANDS)
def test_system_may_sync_the_catalog(payload_type):
    """The LMS (role system) may issue catalog commands."""
    assert authorize(cmd(payload_type, ("system",))) is None


@pytest.mark.parametrize("payload_type", CATALOG_COMMANDS)
@pytest.mark.parametrize("roles", [("teacher",), (), ("student", "guest")])
def test_catalog_commands_forbidden_to_others(payload_type, roles):
    """Catalog commands from neither site_admin nor system are FORBIDDEN."""
    err = authorize(cmd(payload_type, roles))
    assert err is not None and err.code == "FORBIDDEN"


def test_any_role_in_list_suffices():
    """An actor holding several roles is authorized if any of them is allowed."""
    assert authorize(cmd("CreateRule", ("teacher", "site_admin"))) is None
    assert authorize(cmd("UpsertSegment", ("student", "system"))) is None


def test_role_names_are_exact():
    """Role matching is exact: 'Site_Admin' or ' site_admin' is not site_admin."""
    assert authorize(cmd("CreateRule", ("Site_Admin",))).code == "FORBIDDEN"
    assert authorize(cmd("CreateRule", (" site_admin",))).code == "FORBIDDEN"


def test_forbidden_message_names_actor_and_roles():
    """The FORBIDDEN message names the actor and the roles they had, so an admin can act on it."""
    err = authorize(cmd("DeleteRule", ("teacher",), user="jdoe"))
    assert "jdoe" in err.message
    assert "teacher" in err.message


def test_unknown_command_type_is_forbidden():
    """A payload type with no authorization entry is never allowed."""
    err = authorize(cmd("DropEverything", ("site_admin", "system")))
    assert err is not None and err.code == "FORBIDDEN"
