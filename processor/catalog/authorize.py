"""Who may issue which command."""

from __future__ import annotations

from processor.contract.models import Command
from processor.errors import ProcessorError

RULE_COMMANDS = frozenset(
    {"CreateRule", "UpdateRule", "DeleteRule", "EnableSegmentAutomation", "DisableSegmentAutomation"}
)
CATALOG_COMMANDS = frozenset({"UpsertProfileField", "DeleteProfileField", "UpsertSegment", "DeleteSegment"})
SETTINGS_COMMANDS = frozenset({"SetSiteSettings"})  # the large-change guard's threshold: admins only

ALLOWED_ROLES = {
    **{c: frozenset({"site_admin"}) for c in RULE_COMMANDS},
    **{c: frozenset({"site_admin", "system"}) for c in CATALOG_COMMANDS},
    **{c: frozenset({"site_admin"}) for c in SETTINGS_COMMANDS},
}


def authorize(cmd: Command) -> ProcessorError | None:
    """``None`` when the actor may issue the command, else a FORBIDDEN error."""
    allowed = ALLOWED_ROLES.get(cmd.payload_type, frozenset())
    if allowed & set(cmd.actor.roles):
        return None
    return ProcessorError(
        "FORBIDDEN",
        f"{cmd.payload_type} requires role {' or '.join(sorted(allowed))}; "
        f"actor {cmd.actor.user_id!r} has roles {sorted(cmd.actor.roles)}",
        "$.actor.roles",
    )
