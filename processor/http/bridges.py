"""Routes for LMS bridges and connectors: the ingest endpoint, catalog writes, stored profiles.

Registered by ``processor.http.api.Api.routes`` in one line, so the handlers live in their own
modules (``ingest``, ``catalog_writes``, ``user_profiles``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processor.http.api import Api

# Query parameters each handler accepts (merged into Api.QUERY; any other is a 400).
QUERY = {"list_users": {"cursor", "limit"}, "local_profiles": {"after", "limit"}}


def routes(api: "Api") -> list[tuple[str, str, Any]]:
    from processor.http.catalog_writes import CatalogWrites
    from processor.http.ingest import Ingest
    from processor.http.user_profiles import UserProfiles

    return [*Ingest(api).routes(), *CatalogWrites(api).routes(), *UserProfiles(api).routes()]
