"""CLI for catalog management and guarded changes (via a worker's HTTP API).

``segments create|rename|delete|import``, ``fields list|upsert|delete``, ``settings show|set``,
registered on the CLI's groups by :func:`register`. Every command takes ``--json``.

A change the API holds back as large (``409 LARGE_CHANGE``, docs/api.md#guarded-changes) goes
through :func:`guarded`: the impact is printed (counts and a sample of the people), then the CLI
asks ``Apply it?`` (on stderr; no answer, as from a script without a terminal, is "no"), or with
``--yes`` sends it again confirmed at once. Not applied: exit 1, nothing changed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from processor.admin_client import AdminClient, seg
from processor.cli_support import ERROR, REJECTED, TIMED_OUT, CliError, processor_error, site_option
from processor.errors import ProcessorError

MAX_ATTEMPTS = 5  # re-confirmations when the count keeps changing between the answer and the re-send
json_opt = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
yes_opt = click.option("--yes", "-y", is_flag=True,
                       help="Apply a large change (LARGE_CHANGE) without asking; it is still shown.")


def _client(site: str) -> AdminClient:
    try:
        return AdminClient.from_env(site)
    except ProcessorError as err:
        raise processor_error(err) from None


def _fail(data: Any, status: int) -> ProcessorError:
    err = data if isinstance(data, dict) else {}
    return ProcessorError(err.get("code", f"HTTP_{status}"), err.get("message", str(data)), err.get("path", ""))


def _who(p: dict[str, Any]) -> str:
    extra = ", ".join(x for x in (p.get("name"), p.get("email")) if x)
    return f"{p['user_id']} ({extra})" if extra else p["user_id"]


def show_impact(impact: dict[str, Any], err: bool = False) -> None:
    """Per segment: members now, would add, would remove (large ones marked), and the samples."""
    for s in impact.get("segments", []):
        mark = "  LARGE" if s.get("large") else ""
        click.echo(f"  {s.get('name', s['segment_id'])} ({s['segment_id']}): {s['members']} members now, "
                   f"+{s['added']} would be added, -{s['removed']} would be removed{mark}", err=err)
        for key, sign in (("sample_removed", "-"), ("sample_added", "+")):
            people = s.get(key) or []
            if people:
                more = max(0, s["removed" if sign == "-" else "added"] - len(people))
                click.echo(f"    {sign} " + ", ".join(_who(p) for p in people)
                           + (f" and {more} more" if more else ""), err=err)


def guarded(c: AdminClient, method: str, path: str, body: Any, yes: bool, as_json: bool) -> Any:
    """``method path body``; on 409 LARGE_CHANGE show the impact, ask (or ``yes``), and send it
    again with ``"confirm": {"removed": N}``, N the count shown. Any other error raises."""
    payload = body
    for _ in range(MAX_ATTEMPTS):
        status, data = c.call(method, path, payload)
        if not (status == 409 and isinstance(data, dict) and data.get("code") == "LARGE_CHANGE"):
            if status >= 400:
                raise _fail(data, status)
            return data
        n = data["confirm"]["removed"]
        click.echo(f"LARGE_CHANGE: {data['message']}", err=True)
        show_impact(data.get("impact", {}), err=True)
        if not yes:
            try:
                ok = click.confirm(f"Apply it and remove {n} people?", default=False, err=True)
            except click.Abort:
                ok = False
            if not ok:
                if as_json:
                    click.echo(json.dumps(data))
                raise CliError("not applied (LARGE_CHANGE): nothing was changed; answer y, or give --yes", ERROR)
        payload = {**(body or {}), "confirm": {"removed": n}}
    raise CliError(f"the impact kept changing over {MAX_ATTEMPTS} confirmations; nothing was changed", ERROR)


def finish(c: AdminClient, site: str, res: dict[str, Any], as_json: bool) -> None:
    """Wait for a queued command and print its result; exit 4 if REJECTED, 5 if still PENDING."""
    final = c.wait_command(site, res["command_id"])
    if as_json:
        click.echo(json.dumps(final))
    else:
        tail = f" {final.get('code')}: {final.get('message')}" if final["status"] == "REJECTED" else ""
        click.echo(f"{final['status']} {final['command_id']}{tail}")
    if final["status"] == "REJECTED":
        sys.exit(REJECTED)
    if final["status"] == "PENDING":
        click.echo(f"no result yet for {final['command_id']}: it may still be applied", err=True)
        sys.exit(TIMED_OUT)


def rules_dry_run(c: AdminClient, site: str, items: list[Any], as_json: bool) -> None:
    """``rules apply --dry-run``: every rule of the file checked, and the file's combined impact
    per segment (``POST /sites/{site}/rules:impact``). Exit 1 when a rule is not valid."""
    if not items:
        raise CliError("the file holds no rules")
    data = c.ok("POST", f"/sites/{seg(site)}/rules:impact", {"rules": list(items)})
    invalid = [r for r in data["rules"] if not r["valid"]]
    if as_json:
        click.echo(json.dumps(data))
    else:
        for r in data["rules"]:
            state = "ok" if r["valid"] else f"{r['code']} at {r.get('path')}: {r['message']}"
            click.echo(f"{r['action']:6} {r.get('rule_id') or '-'}: {state}")
        click.echo(f"combined impact of the {len(data['rules']) - len(invalid)} valid rule(s) "
                   f"({data['evaluated']} users evaluated; dry run: nothing was changed):")
        show_impact(data)
        click.echo(f"total: +{data['added']} added, -{data['removed']} removed"
                   + ("; LARGE: applying it will ask for confirmation" if data.get("large") else ""))
    if invalid:
        sys.exit(ERROR)


def _api(fn: Any) -> Any:
    import functools

    @functools.wraps(fn)
    def run(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except ProcessorError as err:
            raise processor_error(err) from None

    return run


def _segments(c: AdminClient, site: str) -> dict[str, dict[str, Any]]:
    return {s["segment_id"]: s for s in c.ok("GET", f"/sites/{seg(site)}/segments")["segments"]}


# ------------------------------------------------------------------------- segments
@click.command("create")
@click.argument("segment")
@click.option("--name", required=True, help="Display name (at most 255 characters).")
@site_option
@json_opt
@_api
def segments_create(segment: str, name: str, site: str, as_json: bool) -> None:
    """Create SEGMENT (not managed: turn automation on with `segments manage`)."""
    c = _client(site)
    if segment in _segments(c, site):
        raise CliError(f"segment {segment!r} already exists; rename it with `segments rename {segment} --name ...`")
    finish(c, site, c.ok("PUT", f"/sites/{seg(site)}/segments/{seg(segment)}", {"name": name}), as_json)


@click.command("rename")
@click.argument("segment")
@click.option("--name", required=True, help="The new display name.")
@site_option
@json_opt
@_api
def segments_rename(segment: str, name: str, site: str, as_json: bool) -> None:
    """Rename SEGMENT (its id, members and rules stay)."""
    c = _client(site)
    if segment not in _segments(c, site):
        raise CliError(f"segment {segment!r} does not exist (create it with `segments create`)")
    finish(c, site, c.ok("PUT", f"/sites/{seg(site)}/segments/{seg(segment)}", {"name": name}), as_json)


@click.command("delete")
@click.argument("segment")
@site_option
@yes_opt
@json_opt
@_api
def segments_delete(segment: str, site: str, yes: bool, as_json: bool) -> None:
    """Delete SEGMENT and its rules; its members are removed (asks first when that is a large change)."""
    c = _client(site)
    finish(c, site, guarded(c, "DELETE", f"/sites/{seg(site)}/segments/{seg(segment)}", None, yes, as_json), as_json)


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@site_option
@click.option("--dry-run", is_flag=True, help="Check every row and say what it would do; change nothing.")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for every command's result.")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the results.")
@json_opt
@_api
def segments_import(file: Path, site: str, dry_run: bool, wait: bool, timeout: float, as_json: bool) -> None:
    """Create or update the segments of FILE.csv (columns id, name, optionally managed).

    Each row is answered on its own with its line number: created, updated, unchanged, or failed
    with a code and message. A bad row never stops the others. Exit 1 when a row failed, 4 when
    a command was rejected, 5 when results are still pending.
    """
    import time

    from processor.catalog.bulk import MAX_ROWS, CsvProblem, read_csv

    try:
        lines = read_csv(file.read_text(encoding="utf-8"))
    except (CsvProblem, UnicodeDecodeError) as err:
        raise CliError(f"{file}: {err}; nothing was imported") from None
    c = _client(site)
    report: list[dict[str, Any]] = [{"line": r.line, "status": "REJECTED", "code": r.code, "message": r.message}
                                    for r in lines if r.row is None]
    good = [r for r in lines if r.row is not None]
    for start in range(0, len(good), MAX_ROWS):
        chunk = good[start:start + MAX_ROWS]
        q = "?dry_run=true" if dry_run else ""
        res = c.ok("POST", f"/sites/{seg(site)}/segments:bulk{q}", {"segments": [r.row for r in chunk]})
        for r in res["results"]:
            report.append({"line": chunk[r["index"]].line, **{k: v for k, v in r.items() if k != "index"}})
    report.sort(key=lambda r: r["line"])
    ids = [cmd["command_id"] for r in report for cmd in r.get("commands", []) if "command_id" in cmd]
    if wait and ids:
        deadline = time.monotonic() + timeout
        for r in report:
            for cmd in r.get("commands", []):
                if "command_id" in cmd:
                    left = max(0.5, deadline - time.monotonic())
                    final = c.wait_command(site, cmd["command_id"], timeout=left)
                    cmd.update(status=final["status"], code=final.get("code"), message=final.get("message"))
            outcomes = [cmd.get("status") for cmd in r.get("commands", [])]
            if "REJECTED" in outcomes:
                bad = next(cmd for cmd in r["commands"] if cmd.get("status") == "REJECTED")
                r.update(status="REJECTED", code=bad.get("code"), message=bad.get("message"))
            elif "PENDING" in outcomes:
                r["status"] = "PENDING"
            elif outcomes:
                r["status"] = "ACCEPTED"
    failed = [r for r in report if r["status"] == "REJECTED"]
    rejected_by_worker = [r for r in failed if r.get("commands")]
    pending = [r for r in report if r["status"] in ("PENDING", "QUEUED") and wait]
    if as_json:
        click.echo(json.dumps({"file": str(file), "dry_run": dry_run, "rows": report}))
    else:
        for r in report:
            what = r.get("action", "")
            tail = f" {r.get('code')}: {r.get('message')}" if r["status"] == "REJECTED" else ""
            click.echo(f"line {r['line']:>5}  {r.get('segment_id') or '-':30} {what:7} {r['status']}{tail}")
        n_ok = len(report) - len(failed)
        click.echo(f"{len(report)} row(s): {n_ok} ok, {len(failed)} failed"
                   + (" (dry run: nothing was changed)" if dry_run else ""), err=True)
    if rejected_by_worker:
        sys.exit(REJECTED)
    if failed:
        sys.exit(ERROR)
    if pending:
        sys.exit(TIMED_OUT)


# --------------------------------------------------------------------------- fields
@click.group()
def fields() -> None:
    """Custom profile fields of a site (rules name them profile_field_<shortname>)."""


@fields.command("list")
@site_option
@json_opt
@_api
def fields_list(site: str, as_json: bool) -> None:
    """The site's custom profile fields with type and options."""
    data = [f for f in _client(site).ok("GET", f"/sites/{seg(site)}/fields")["fields"] if f["custom"]]
    if as_json:
        click.echo(json.dumps({"fields": data}))
        return
    for f in data:
        opts = f" [{', '.join(f['options'])}]" if f["options"] else ""
        click.echo(f"{f['shortname']:30} {f['type']:12} {f['label']}{opts}")


@fields.command("upsert")
@click.argument("shortname")
@click.option("--datatype", required=True, type=click.Choice(["TEXT", "TEXTAREA", "MENU", "MULTISELECT", "CHECKBOX",
                                                               "DATETIME", "NUMBER"], case_sensitive=False))
@click.option("--name", default=None, help="Display name (default: the shortname).")
@click.option("--option", "options", multiple=True, help="A MENU or MULTISELECT option (repeat, in order).")
@site_option
@json_opt
@_api
def fields_upsert(shortname: str, datatype: str, name: str | None, options: tuple[str, ...], site: str,
                  as_json: bool) -> None:
    """Declare or change the custom profile field SHORTNAME."""
    c = _client(site)
    body = {"datatype": datatype.upper(), "options": list(options), **({"name": name} if name else {})}
    finish(c, site, c.ok("PUT", f"/sites/{seg(site)}/fields/{seg(shortname)}", body), as_json)


@fields.command("delete")
@click.argument("shortname")
@site_option
@yes_opt
@json_opt
@_api
def fields_delete(shortname: str, site: str, yes: bool, as_json: bool) -> None:
    """Delete the custom profile field SHORTNAME (rules using it break; asks first when that
    removes many people)."""
    c = _client(site)
    finish(c, site, guarded(c, "DELETE", f"/sites/{seg(site)}/fields/{seg(shortname)}", None, yes, as_json),
           as_json)


# ------------------------------------------------------------------------- settings
@click.group()
def settings() -> None:
    """Site settings (the large-change guard's threshold)."""


@settings.command("show")
@site_option
@json_opt
@_api
def settings_show(site: str, as_json: bool) -> None:
    """The site's settings and their defaults."""
    data = _client(site).ok("GET", f"/sites/{seg(site)}/settings")
    if as_json:
        click.echo(json.dumps(data))
        return
    d = data["defaults"]
    click.echo(f"large_change_min_removed {data['large_change_min_removed']} (default {d['large_change_min_removed']})")
    click.echo(f"large_change_ratio       {data['large_change_ratio']} (default {d['large_change_ratio']})")


@settings.command("set")
@click.option("--min-removed", type=click.IntRange(0), default=None,
              help="A change is large only if it removes at least this many people from a segment.")
@click.option("--ratio", type=click.FloatRange(0, 1), default=None,
              help="... and more than this share of its members (0.1 = 10%).")
@site_option
@json_opt
@_api
def settings_set(min_removed: int | None, ratio: float | None, site: str, as_json: bool) -> None:
    """Change the large-change guard's threshold (role site_admin)."""
    if min_removed is None and ratio is None:
        raise click.UsageError("give --min-removed and/or --ratio")
    body: dict[str, Any] = {}
    if min_removed is not None:
        body["large_change_min_removed"] = min_removed
    if ratio is not None:
        body["large_change_ratio"] = ratio
    c = _client(site)
    finish(c, site, c.ok("PUT", f"/sites/{seg(site)}/settings", body), as_json)


def register(main: click.Group, segments: click.Group) -> None:
    """Add these commands to the CLI (processor/cli.py)."""
    for cmd in (segments_create, segments_rename, segments_delete, segments_import):
        segments.add_command(cmd)
    main.add_command(fields)
    main.add_command(settings)
