"""``python -m processor users upsert|delete``: produce a user event by hand, as the LMS would.

``upsert`` sends a ``USER_UPDATED`` (a patch: the given fields change, the others stay; a user
never seen is created) or, with ``--replace``, a ``USER_CREATED`` (the given fields are the whole
profile). ``delete`` sends a ``USER_DELETED``. Both go through the contract's producer
(:class:`processor.client.ContractProducer`: Avro, key ``site_id:user_id``), so the worker sees
exactly what an LMS bridge would send.

``FIELD=VALUE`` is typed by the field's type: the site's field catalog (``GET
/sites/{site}/fields``, with ``API_URL`` and ``ADMIN_TOKEN`` or ``ADMIN_JWT_SECRET``) when the API
answers, else only the standard fields' types (custom fields then go as text: say so, or write
``FIELD:=JSON``):

* text, text area, menu: the text as given (``department=Sales``; ``department=`` is empty);
* number: ``42``, ``-1.5``;
* checkbox: ``true``/``false`` (also ``1``/``0``, ``yes``/``no``, ``on``/``off``);
* datetime: epoch seconds as Moodle stores them, from ``2024-05-01`` (UTC midnight),
  ``2024-05-01T09:30:00+02:00`` (no offset: UTC), ``1714521600``, ``now``, or ``now-P3D`` /
  ``now+PT2H`` (an ISO-8601 duration before/after now);
* multi-select: ``interests=golf,chess`` (comma-separated) or a JSON list.

``FIELD:=JSON`` sends a JSON value as it is (``score:=3``, ``tags:=["a","b"]``, ``x:=null`` clears
the field in a patch), whatever the catalog says.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

import click

from processor.cli_support import TIMED_OUT, CliError, processor_error, require_kafka, site_option
from processor.rules.fields import STANDARD_FIELDS, FieldType

TRUE = {"true", "1", "yes", "on"}
FALSE = {"false", "0", "no", "off"}
_NOW = re.compile(r"now(?:\s*([+-])\s*(P\S+))?", re.IGNORECASE)


@dataclass(frozen=True)
class FieldInfo:
    key: str
    type: FieldType
    options: tuple[str, ...] = ()


class ValueProblem(ValueError):
    """A FIELD=VALUE that cannot be sent: the message names the field and what it takes."""


def standard_catalog() -> dict[str, FieldInfo]:
    """The fallback catalog: Moodle's standard fields, whose types need no API."""
    return {k: FieldInfo(k, t) for k, t in STANDARD_FIELDS.items()}


def catalog_from_api(data: Mapping[str, Any]) -> dict[str, FieldInfo]:
    """The catalog from ``GET /sites/{site}/fields``."""
    return {f["key"]: FieldInfo(f["key"], FieldType(f["type"]), tuple(f.get("options") or ()))
            for f in data["fields"]}


def epoch_seconds(text: str, now: float | None = None) -> int:
    """A datetime value as epoch seconds (see the module docstring for the forms)."""
    from processor.rules.durations import parse_duration
    from processor.rules.exceptions import RuleError
    from processor.rules.values import parse_epoch_value

    t = text.strip()
    m = _NOW.fullmatch(t)
    if m:
        base = int(time.time() if now is None else now)
        if not m.group(1):
            return base
        try:
            secs = parse_duration(m.group(2))
        except RuleError as err:
            raise ValueProblem(err.message) from None
        return base + secs if m.group(1) == "+" else base - secs
    value: Any = int(t) if re.fullmatch(r"-?[0-9]+", t) else t
    epoch = parse_epoch_value(value)
    if epoch is None:
        raise ValueProblem(f"{text!r} is not a date or time: write 2024-05-01, 2024-05-01T09:30:00+02:00, "
                           "epoch seconds, now, or now-P3D")
    return epoch


def typed_value(info: FieldInfo | None, raw: str, now: float | None = None) -> Any:
    """The profile value of ``FIELD=raw`` for a field of ``info``'s type (text when unknown)."""
    if info is None or info.type in (FieldType.TEXT, FieldType.TEXTAREA, FieldType.MENU):
        return raw
    if info.type is FieldType.NUMBER:
        try:
            n = float(raw)
        except ValueError:
            raise ValueProblem(f"{raw!r} is not a number") from None
        if n != n or n in (float("inf"), float("-inf")):
            raise ValueProblem(f"{raw!r} is not a finite number")
        return int(n) if re.fullmatch(r"\s*-?[0-9]+\s*", raw) else n
    if info.type is FieldType.CHECKBOX:
        low = raw.strip().lower()
        if low in TRUE:
            return True
        if low in FALSE:
            return False
        raise ValueProblem(f"{raw!r} is not a checkbox value: write true or false")
    if info.type is FieldType.DATETIME:
        return epoch_seconds(raw, now)
    if info.type is FieldType.MULTISELECT:
        if raw.strip().startswith("["):
            return json_value(raw)
        return [x.strip() for x in raw.split(",") if x.strip()]
    return raw  # pragma: no cover - every FieldType is handled above


def json_value(raw: str) -> Any:
    """``FIELD:=JSON``: a value the contract carries (null, text, number, true/false, list of texts)."""
    try:
        v = json.loads(raw)
    except ValueError:
        raise ValueProblem(f"{raw!r} is not JSON (FIELD:=JSON takes e.g. 3, true, null, \"text\" or [\"a\", \"b\"])") \
            from None
    ok = v is None or isinstance(v, (str, bool, int, float)) or (
        isinstance(v, list) and all(isinstance(x, str) for x in v))
    if not ok:
        raise ValueProblem("a profile value is null, a text, a number, true/false or a list of texts")
    return v


def parse_assignments(items: tuple[str, ...] | list[str], catalog: Mapping[str, FieldInfo],
                      now: float | None = None) -> tuple[dict[str, Any], list[str], list[str]]:
    """``(profile, problems, notes)`` from ``FIELD=VALUE`` / ``FIELD:=JSON`` arguments."""
    profile: dict[str, Any] = {}
    problems: list[str] = []
    notes: list[str] = []
    for item in items:
        key, sep, raw = item.partition("=")
        as_json = sep and key.endswith(":")
        key = key[:-1] if as_json else key
        if not sep or not key:
            problems.append(f"{item!r}: write FIELD=VALUE (or FIELD:=JSON)")
            continue
        info = catalog.get(key)
        if info is None and not as_json:
            close = difflib.get_close_matches(key, list(catalog), n=1, cutoff=0.8)
            custom = f"profile_field_{key}"
            if custom in catalog:
                problems.append(f"{key}: unknown field; did you mean {custom} (custom fields are profile_field_<name>)?")
                continue
            if close:
                problems.append(f"{key}: unknown field; did you mean {close[0]}?")
                continue
            notes.append(f"{key}: not in the field catalog, sent as text (FIELD:=JSON sends another type)")
        try:
            profile[key] = json_value(raw) if as_json else typed_value(info, raw, now)
        except ValueProblem as err:
            kind = info.type.value.lower() if info else "field"
            problems.append(f"{key} ({kind}): {err}")
            continue
        if info is not None and info.type is FieldType.MENU and info.options and raw not in info.options \
                and not as_json and raw != "":
            notes.append(f"{key}: {raw!r} is not one of the menu's options ({', '.join(info.options)})")
    return profile, problems, notes


def _catalog(site: str, use_api: bool) -> tuple[dict[str, FieldInfo], str | None]:
    """(catalog, note): the site's catalog from the API, or the standard fields and why."""
    if not use_api:
        return standard_catalog(), None
    from processor.admin_client import AdminClient, seg
    from processor.errors import ProcessorError

    try:
        return catalog_from_api(AdminClient.from_env(site).ok("GET", f"/sites/{seg(site)}/fields")), None
    except ProcessorError as err:
        return standard_catalog(), (f"field catalog not read ({err.code}: {err.message}); standard fields are "
                                    "typed, custom ones sent as text")


def _send(site: str, user: str, etype: str, profile: dict[str, Any], as_json: bool) -> None:
    from processor.client import ContractProducer
    from processor.config import Settings
    from processor.contract.codec import decode_user_event, encode_user_event, user_event_key
    from processor.contract.exceptions import ContractError
    from processor.contract.models import UserEvent
    from processor.errors import ProcessorError

    ev = UserEvent(f"cli-{uuid.uuid4().hex}", etype, site, user, int(time.time() * 1000), profile)
    try:  # the worker's own checks (ids, sizes, values): what it would dead-letter is not sent
        decode_user_event(user_event_key(site, user), encode_user_event(ev))
    except ContractError as err:
        raise processor_error(err) from None
    s = Settings.from_env()
    require_kafka(s.bootstrap_servers, security=s.kafka_security)
    prod = ContractProducer.from_settings(s)
    try:
        prod.user_event(ev)
    except ProcessorError as err:  # the Schema Registry (SCHEMA_REGISTRY_URL) did not give our schema's id
        raise processor_error(err) from None
    try:
        prod.flush(30)
    except RuntimeError:
        raise CliError(f"the event was not acknowledged by Kafka at {s.bootstrap_servers} within 30 s", TIMED_OUT) \
            from None
    out = {"event_id": ev.event_id, "event_type": etype, "site_id": site, "user_id": user, "profile": profile,
           "topic": s.topics.user_events}
    if as_json:
        click.echo(json.dumps(out, sort_keys=True))
    else:
        click.echo(f"sent {etype} {site}/{user} {json.dumps(profile, ensure_ascii=False)} "
                   f"(event {ev.event_id} to {s.topics.user_events})")


@click.group("users")
def users() -> None:
    """Produce user events by hand (what the LMS sends): try a rule without an LMS."""


@users.command("upsert")
@click.argument("user")
@click.argument("fields", nargs=-1, metavar="[FIELD=VALUE | FIELD:=JSON]...")
@site_option
@click.option("--replace", is_flag=True,
              help="Send USER_CREATED: these fields become the whole profile (default: USER_UPDATED, a patch).")
@click.option("--catalog/--no-catalog", "use_api", default=True, show_default=True,
              help="Type values with the site's field catalog from the API (API_URL, ADMIN_TOKEN).")
@click.option("--json", "as_json", is_flag=True, help="Print the event sent as JSON.")
def upsert_cmd(user: str, fields: tuple[str, ...], site: str, replace: bool, use_api: bool, as_json: bool) -> None:
    """Create or update USER with the given profile fields.

    \b
    Example (against `make run`):
      python -m processor users upsert dave department=Sales lastaccess=now-P3D
    Values are typed by the field's type: numbers, true/false, dates (sent as epoch seconds:
    2024-05-01, 2024-05-01T09:30:00+02:00, now, now-P3D), lists (a,b). FIELD:=JSON sends JSON as it
    is (x:=null clears a field).
    """
    catalog, note = _catalog(site, use_api)
    profile, problems, notes = parse_assignments(fields, catalog)
    for n in ([note] if note else []) + notes:
        click.echo(f"note: {n}", err=True)
    if problems:
        for p in problems:
            click.echo(f"INVALID_VALUE: {p}", err=True)
        raise CliError(f"{len(problems)} field(s) cannot be sent; nothing was sent")
    if not profile and not replace:
        raise click.UsageError("give at least one FIELD=VALUE (or --replace to send an empty profile)")
    _send(site, user, "USER_CREATED" if replace else "USER_UPDATED", profile, as_json)


@users.command("delete")
@click.argument("user")
@site_option
@click.option("--json", "as_json", is_flag=True, help="Print the event sent as JSON.")
def delete_cmd(user: str, site: str, as_json: bool) -> None:
    """Delete USER: automation removes them from every managed segment."""
    _send(site, user, "USER_DELETED", {}, as_json)


if __name__ == "__main__":  # pragma: no cover
    users(sys.argv[1:])
