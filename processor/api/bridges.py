"""Routes for LMS bridges and connectors: the ingest endpoint, catalog writes, stored profiles.

Registered by ``processor.web.Api.routes`` in one line, so the handlers live in their own modules
(``ingest``, ``catalog_writes``, ``user_profiles``) and move with the API package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processor.web import Api

# Query parameters each handler accepts (merged into Api.QUERY; any other is a 400).
QUERY = {"list_users": {"cursor", "limit"}, "local_profiles": {"after", "limit"}}


def routes(api: "Api") -> list[tuple[str, str, Any]]:
    from processor.api.catalog_writes import CatalogWrites
    from processor.api.ingest import Ingest
    from processor.api.user_profiles import UserProfiles

    return [*Ingest(api).routes(), *CatalogWrites(api).routes(), *UserProfiles(api).routes()]
