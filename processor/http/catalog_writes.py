"""Catalog writes over HTTP (segments and custom profile fields), for bridges and imports.

``PUT``/``DELETE /sites/{site}/segments/{segment}`` and ``/sites/{site}/fields/{shortname}``
become ``UpsertSegment``/``DeleteSegment``/``UpsertProfileField``/``DeleteProfileField``
commands through the API's usual command path (202 + a command id to poll), so Kafka stays the
source of truth and the command's own validation decides (REJECTED with a code). Roles:
``site_admin`` or ``system``, the roles the catalog commands accept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web as aioweb

from processor.api.auth import WRITE_CATALOG
from processor.api.errors import ApiError
from processor.api.requests import require_object
from processor.http.guard import confirm_only
from processor.rules.fields import FieldType

if TYPE_CHECKING:
    from processor.http.api import Api

MAX_OPTIONS = 1000


def _name(body: dict[str, Any], default: str | None) -> str:
    v = body.get("name", default)
    if not isinstance(v, str) or not v.strip() or len(v) > 255:
        raise ApiError(400, "INVALID_FIELD", "name must be a non-empty string (max 255)", "$.name")
    return v


def segment_payload(body: Any, segment_id: str) -> dict[str, Any]:
    b = require_object(body)
    extra = sorted(set(b) - {"name"})
    if extra:
        raise ApiError(400, "INVALID_FIELD", f"unknown field {extra[0]!r}; a segment has a name", f"$.{extra[0]}")
    if "name" not in b:
        raise ApiError(400, "INVALID_FIELD", "name is required", "$.name")
    return {"segment_id": segment_id, "name": _name(b, None)}


def field_payload(body: Any, shortname: str) -> dict[str, Any]:
    b = require_object(body)
    extra = sorted(set(b) - {"name", "datatype", "options"})
    if extra:
        raise ApiError(400, "INVALID_FIELD", f"unknown field {extra[0]!r}; a profile field has name, datatype, "
                       "options", f"$.{extra[0]}")
    types = [t.value for t in FieldType]
    dt = b.get("datatype")
    if dt not in types:
        raise ApiError(400, "INVALID_FIELD", f"datatype must be one of {', '.join(types)}", "$.datatype")
    options = b.get("options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) and len(o) <= 255 for o in options):
        raise ApiError(400, "INVALID_FIELD", "options must be an array of strings (max 255 characters each)",
                       "$.options")
    if len(options) > MAX_OPTIONS:
        raise ApiError(400, "INVALID_FIELD", f"at most {MAX_OPTIONS} options", "$.options")
    return {"shortname": shortname, "name": _name(b, shortname), "datatype": dt, "options": list(options)}


class CatalogWrites:
    def __init__(self, api: "Api") -> None:
        self.api = api

    def routes(self) -> list[tuple[str, str, Any]]:
        s = "/sites/{site}"
        return [
            ("PUT", f"{s}/segments/{{segment}}", self.put_segment),
            ("DELETE", f"{s}/segments/{{segment}}", self.delete_segment),
            ("PUT", f"{s}/fields/{{shortname}}", self.put_field),
            ("DELETE", f"{s}/fields/{{shortname}}", self.delete_field),
        ]

    async def put_segment(self, request: aioweb.Request) -> aioweb.Response:
        p = self.api.principal(request, WRITE_CATALOG)
        payload = segment_payload(await self.api.body(request), request.match_info["segment"])
        return await self.api._submit(request, p, "UpsertSegment", payload)

    async def delete_segment(self, request: aioweb.Request) -> aioweb.Response:
        p = self.api.principal(request, WRITE_CATALOG)
        _, confirmed = confirm_only(await self.api.optional_body(request))  # guarded (processor/http/guard.py)
        return await self.api._submit(request, p, "DeleteSegment", {"segment_id": request.match_info["segment"]},
                                      confirmed=confirmed)

    async def put_field(self, request: aioweb.Request) -> aioweb.Response:
        p = self.api.principal(request, WRITE_CATALOG)
        payload = field_payload(await self.api.body(request), request.match_info["shortname"])
        return await self.api._submit(request, p, "UpsertProfileField", payload)

    async def delete_field(self, request: aioweb.Request) -> aioweb.Response:
        p = self.api.principal(request, WRITE_CATALOG)
        _, confirmed = confirm_only(await self.api.optional_body(request))  # its rules break: guarded too
        return await self.api._submit(request, p, "DeleteProfileField",
                                      {"shortname": request.match_info["shortname"]}, confirmed=confirmed)
