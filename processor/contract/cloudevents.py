"""CloudEvents 1.0 context attributes of a membership change, as Kafka record headers.

The CloudEvents Kafka protocol binding's *binary content mode*: the record value stays our Avro
(the event's ``data``), ``content-type`` declares its media type and every other attribute is
one ``ce_``-prefixed UTF-8 header. A consumer (or a generic CloudEvents router) can then route
and de-duplicate without decoding Avro. The values are a pure function of the change and the
wire format, so a change re-emitted after a crash carries the same headers as its first copy
(docs/contract.md "CloudEvents headers" names and justifies each value).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Callable
from urllib.parse import quote

from processor.contract.models import MembershipChange

Headers = list[tuple[str, bytes]]

SPECVERSION = "1.0"
TYPE = "lms.segment.membership.changed.v1"
CONTENT_TYPE_AVRO = "application/avro"  # schemaless Avro of schemas/membership_change.avsc
CONTENT_TYPE_FRAMED = "application/vnd.confluent.avro"  # the Schema Registry framing in front

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SPECVERSION = ("ce_specversion", SPECVERSION.encode())
_TYPE = ("ce_type", TYPE.encode())


def content_type(framed: bool) -> str:
    """The media type of the record value: plain schemaless Avro, or Confluent-framed Avro
    (magic byte, schema id, then the Avro body) when a Schema Registry is configured."""
    return CONTENT_TYPE_FRAMED if framed else CONTENT_TYPE_AVRO


def _segment(id_: str) -> str:
    # A site or segment id is letters/digits of any script plus _ - . (processor/contract/ids.py):
    # ASCII ones are URI-unreserved as they are; other scripts are percent-encoded (UTF-8).
    return id_ if id_.isascii() else quote(id_, safe="")


def source(site_id: str, segment_id: str) -> str:
    """``/sites/{site_id}/segments/{segment_id}``: the segment whose membership changed (a
    URI-reference; with ``ce_id`` = the change id, unique per distinct change)."""
    return f"/sites/{_segment(site_id)}/segments/{_segment(segment_id)}"


@lru_cache(maxsize=4096)
def _second(s: int) -> str | None:
    # Cached per second: the changes of one event, or of one command's backfill, share their time.
    try:
        d = _EPOCH + timedelta(seconds=s)
    except OverflowError:
        return None
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"


def rfc3339(ms: int) -> str | None:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds (``2026-12-05T09:30:00.250Z``);
    None for 0 (the schema's default: time unknown) or a value outside years 1-9999."""
    if not ms:
        return None
    s, frac = divmod(ms, 1000)
    head = _second(s)
    return None if head is None else f"{head}.{frac:03d}Z"


def headers(change: MembershipChange, content_type: str = CONTENT_TYPE_AVRO) -> Headers:
    """The binary-mode headers of one change, in a fixed order: ``ce_specversion``, ``ce_id``
    (the change id), ``ce_source``, ``ce_type``, ``ce_time`` (the cause's ``occurred_at``, absent
    when unknown), ``ce_subject`` (the user id) and ``content-type``."""
    out: Headers = [_SPECVERSION, ("ce_id", change.change_id.encode()),
                    ("ce_source", source(change.site_id, change.segment_id).encode()), _TYPE]
    t = rfc3339(change.occurred_at)
    if t is not None:
        out.append(("ce_time", t.encode()))
    if change.user_id:
        out.append(("ce_subject", change.user_id.encode()))
    out.append(("content-type", content_type.encode()))
    return out


def header_builder(framed: bool) -> Callable[[MembershipChange], Headers]:
    """``headers`` for the output topic's wire format (``framed``: Schema Registry on): what
    the workers' outbox and the rebuild both attach to every change they produce."""
    ct = content_type(framed)
    return lambda change: headers(change, ct)
