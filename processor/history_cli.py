"""``python -m processor history user|segment`` and ``python -m processor audit``: the history and
audit reads of the admin API (docs/api.md "History and audit"), as tables or ``--json``.

Same credentials as the other admin commands (API_URL, ADMIN_TOKEN or ADMIN_JWT_SECRET); times
are printed local, ISO-8601 with their offset, and ``--since``/``--until`` take what the API
takes (epoch ms, a date, an ISO-8601 date-time). ``--all`` follows every page.
"""

from __future__ import annotations

import json
from typing import Any, Callable
from urllib.parse import urlencode

import click

from processor.admin_client import seg
from processor.cli_support import iso_time, processor_error, site_option

json_opt = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
limit_opt = click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True,
                         help="Items per page.")
all_opt = click.option("--all", "all_pages", is_flag=True, help="Follow every page.")
window = [click.option("--since", default=None, help="From this time (epoch ms, 2026-11-20, or ISO-8601)."),
          click.option("--until", default=None, help="Up to this time, inclusive (a date: its whole day).")]


def _with_window(fn: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(window):
        fn = opt(fn)
    return fn


def _client(site: str) -> Any:
    from processor.admin_client import AdminClient
    from processor.errors import ProcessorError

    try:
        return AdminClient.from_env(site)
    except ProcessorError as err:
        raise processor_error(err) from None


def _fetch(site: str, path: str, key: str, query: dict[str, Any], all_pages: bool) -> dict[str, Any]:
    """The first page (every page with ``all_pages``), its items under ``key`` merged."""
    from processor.errors import ProcessorError

    c = _client(site)
    items: list[Any] = []
    cursor = None
    try:
        while True:
            q = {k: v for k, v in {**query, "cursor": cursor}.items() if v not in (None, "")}
            page = c.ok("GET", f"{path}?{urlencode(q)}" if q else path)
            items += page[key]
            cursor = page.get("next_cursor")
            if not cursor or not all_pages:
                break
    except ProcessorError as err:
        raise processor_error(err) from None
    return {**page, key: items, "next_cursor": cursor}


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in columns:
        t.add_column(col)
    for r in rows:
        t.add_row(*[str(x) for x in r])
    Console().print(t)


def _cause(ch: dict[str, Any]) -> str:
    who = f" by {ch['actor']['user_id']}" if ch.get("actor") else ""
    return f"{ch['cause_kind']} {ch['cause_id']}{who}"


def _values(ch: dict[str, Any]) -> str:
    ev = ch.get("evidence") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(ev.items()))


def _more(data: dict[str, Any], as_json: bool) -> None:
    if data.get("next_cursor") and not as_json:
        click.echo("more: every page with --all", err=True)


@click.group()
def history() -> None:
    """Membership history of a user or a segment (kept by every worker; docs/api.md)."""


@history.command("user")
@click.argument("user")
@site_option
@click.option("--segment", default=None, help="Only this segment's changes.")
@_with_window
@limit_opt
@all_opt
@json_opt
def history_user(user: str, site: str, segment: str | None, since: str | None, until: str | None, limit: int,
                 all_pages: bool, as_json: bool) -> None:
    """Every membership change of USER, newest first: when, segment, cause (and who), rules, values."""
    data = _fetch(site, f"/sites/{seg(site)}/users/{seg(user)}/history", "changes",
                  {"segment": segment, "since": since, "until": until, "limit": limit}, all_pages)
    if as_json:
        click.echo(json.dumps(data))
        return
    _table(f"{user}: {len(data['changes'])} change(s)" + (" (older ones pruned)" if data.get("pruned") else ""),
           ["when", "segment", "change", "cause", "rules", "values"],
           [[iso_time(c["emitted_at"]), c["segment_id"], c["change"], _cause(c), ",".join(c["matched_rule_ids"]),
             _values(c)] for c in data["changes"]])
    _more(data, as_json)


@history.command("segment")
@click.argument("segment")
@site_option
@_with_window
@limit_opt
@all_opt
@json_opt
def history_segment(segment: str, site: str, since: str | None, until: str | None, limit: int, all_pages: bool,
                    as_json: bool) -> None:
    """SEGMENT's changes, newest first, and its size at the end of each day (UTC)."""
    data = _fetch(site, f"/sites/{seg(site)}/segments/{seg(segment)}/history", "changes",
                  {"since": since, "until": until, "limit": limit}, all_pages)
    if as_json:
        click.echo(json.dumps(data))
        return
    moved = [p for p in data["series"] if p["added"] or p["removed"]]
    _table(f"{segment}: size by day (days with changes; {len(data['series'])} day(s) in the window)",
           ["date", "added", "removed", "size"], [[p["date"], p["added"], p["removed"], p["size"]] for p in moved])
    _table(f"{segment}: {len(data['changes'])} change(s)", ["when", "user", "change", "cause", "rules"],
           [[iso_time(c["emitted_at"]), c["user_id"], c["change"], _cause(c), ",".join(c["matched_rule_ids"])]
            for c in data["changes"]])
    _more(data, as_json)


@click.command("audit")
@site_option
@_with_window
@limit_opt
@all_opt
@json_opt
def audit(site: str, since: str | None, until: str | None, limit: int, all_pages: bool, as_json: bool) -> None:
    """Every command of the site, newest first: who, when, what, the decision and its impact."""
    data = _fetch(site, f"/sites/{seg(site)}/audit", "commands", {"since": since, "until": until, "limit": limit},
                  all_pages)
    if as_json:
        click.echo(json.dumps(data))
        return
    _table(f"site {site}: {len(data['commands'])} command(s)", ["when", "who", "what", "result", "impact"],
           [[iso_time(a["processed_at"]), a["actor"]["user_id"], a["summary"],
             a["status"] + (f" {a['code']}" if a.get("code") else ""),
             f"+{a['impact']['added']} -{a['impact']['removed']}"] for a in data["commands"]])
    _more(data, as_json)


def register(main: click.Group) -> None:
    """``history`` and ``audit`` on the CLI (one line in processor/cli.py)."""
    main.add_command(history)
    main.add_command(audit)
