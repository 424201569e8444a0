"""The CLI waits for a command until it is APPLIED (every users partition finished its backfill),
with a progress bar on stderr (rich), and sends a rules file as Batch commands.

* :func:`wait_applied`: polls ``GET /sites/{site}/commands/{id}`` (docs/api.md, "Command
  progress"); :func:`wait_results_applied`: reads the command-results topic (``commands publish``).
* :func:`exit_for`: the exit code of a final status (4 rejected, 5 not applied within the wait,
  1 a partition's backfill failed).
* :func:`apply_rules`: ``rules apply FILE`` as ``POST /sites/{site}/rules:bulk`` requests of up to
  1,000 rules and 200 KiB, every one validated (dry run) before the first is sent.
"""

from __future__ import annotations

import json
import re
import sys
import time
from contextlib import contextmanager
from typing import Any, Iterator

import click

from processor.admin_client import AdminClient, seg
from processor.cli_support import ERROR, REJECTED, TIMED_OUT

DONE = ("APPLIED", "REJECTED")
MAX_RULES = 1000
MAX_REQUEST_BYTES = 200 * 1024  # under the API's 256 KiB body limit, with room for the JSON around


@contextmanager
def bar(enabled: bool) -> Iterator[Any]:
    """A rich progress display on stderr (stdout stays the result), or a stand-in that shows nothing."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True, disable=not enabled) as progress:
        yield progress


def describe(st: dict[str, Any]) -> str:
    p = st.get("progress") or {}
    return (f"{st['command_id'][:20]} {st.get('state', st['status']).lower()}: {p.get('users_evaluated', 0):,} "
            f"users, +{p.get('users_added', 0):,} -{p.get('users_removed', 0):,}")


def failed(st: dict[str, Any]) -> bool:
    return (st.get("progress") or {}).get("code") == "BACKFILL_FAILED"


def wait_applied(c: AdminClient, site: str, command_id: str, timeout: float = 120.0, show: bool = True,
                 poll_s: float = 0.25) -> dict[str, Any]:
    """The command's status once it is APPLIED or REJECTED (or a partition's backfill failed);
    the last status seen when ``timeout`` runs out. A worker of an earlier version (no ``state``)
    is done once the command is decided."""
    deadline = time.monotonic() + timeout
    st: dict[str, Any] = {"command_id": command_id, "status": "PENDING", "state": "PENDING"}
    with bar(show) as progress:
        task = progress.add_task(f"{command_id[:20]} pending", total=None)
        while True:
            st = c.ok("GET", f"/sites/{seg(site)}/commands/{seg(command_id)}")
            if "state" not in st:
                if st["status"] != "PENDING":
                    return st
            elif st["state"] in DONE or failed(st):
                return st
            p = st.get("progress")
            if p:
                progress.update(task, total=p["partitions_total"] or None, completed=p["partitions_done"],
                                description=describe(st))
            if time.monotonic() >= deadline:
                return st
            time.sleep(poll_s)


def exit_for(final: dict[str, Any], wait_hint: str = "") -> None:
    """Exit 4 when rejected, 1 when a partition's backfill failed, 5 when the wait ended before
    the command was applied; return when it was applied."""
    cid = final["command_id"]
    if final["status"] == "REJECTED":
        sys.exit(REJECTED)
    if failed(final):
        click.echo(f"{cid}: {final['progress'].get('message')}", err=True)
        sys.exit(ERROR)
    if final["status"] == "PENDING":
        click.echo(f"no result yet for {cid}: it may still be applied{wait_hint}", err=True)
        sys.exit(TIMED_OUT)
    if final.get("state", "APPLIED") != "APPLIED":
        p = final.get("progress") or {}
        click.echo(f"{cid} is accepted and still applying ({p.get('partitions_done', 0)} of "
                   f"{p.get('partitions_total', '?')} partitions done): it will finish; poll "
                   f"/sites/.../commands/{cid}{wait_hint}", err=True)
        sys.exit(TIMED_OUT)


def wait_results_applied(s: Any, ids: set[str], timeout: float, show: bool = True
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """From the command-results topic: each command's decision (its first result) and its latest
    progress record (APPLYING / APPLIED). Waits until every command is rejected or APPLIED, or
    ``timeout`` runs out."""
    from processor.cli_support import processor_error
    from processor.client import TopicReader
    from processor.errors import ProcessorError
    from processor.wire import WireFormat

    wire = WireFormat.from_settings(s)
    reader = TopicReader.from_settings(s, s.topics.command_results)
    decisions: dict[str, Any] = {}
    latest: dict[str, Any] = {}
    deadline = time.monotonic() + timeout

    def finished(cid: str) -> bool:
        d = decisions.get(cid)
        if d is None:
            return False
        r = latest.get(cid)
        return d.status != "ACCEPTED" or (r is not None and (r.status == "APPLIED" or r.code == "BACKFILL_FAILED"))

    try:
        with bar(show) as progress:
            task = progress.add_task("commands applied", total=len(ids))
            while time.monotonic() < deadline and not all(finished(i) for i in ids):
                for _, v in reader.poll_batch():
                    if v is None:
                        continue
                    try:
                        r = wire.decode_command_result(v)
                    except ProcessorError as err:  # a registry that does not answer (SCHEMA_REGISTRY_URL)
                        raise processor_error(err) from None
                    if r.command_id not in ids:
                        continue
                    if r.status in ("ACCEPTED", "REJECTED"):
                        decisions.setdefault(r.command_id, r)
                    elif latest.get(r.command_id) is None or latest[r.command_id].status != "APPLIED":
                        latest[r.command_id] = r  # APPLIED is final: a late APPLYING does not replace it
                progress.update(task, completed=sum(finished(i) for i in ids),
                                description=f"commands applied ({sum(r.users_evaluated or 0 for r in latest.values()):,}"
                                            " users evaluated)")
    finally:
        reader.close()
    return decisions, latest


def _chunks(items: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = [[]]
    size = 0
    for item in items:
        n = len(json.dumps(item)) + 2
        if out[-1] and (len(out[-1]) >= MAX_RULES or size + n > MAX_REQUEST_BYTES):
            out.append([])
            size = 0
        out[-1].append(item)
        size += n
    return [c for c in out if c]


def apply_rules(c: AdminClient, site: str, items: list[dict[str, Any]], timeout: float, show: bool,
                yes: bool = False, as_json: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per-rule results, every invalid rule). Validates every request first (dry run); sends
    nothing if a rule is invalid; else sends them in order (a large change is shown and confirmed,
    or ``yes``: processor/catalog_cli.py ``guarded``) and waits for each to be APPLIED."""
    from processor.catalog_cli import guarded

    chunks = _chunks(items)
    path = f"/sites/{seg(site)}/rules:bulk"
    errors: list[dict[str, Any]] = []
    offset = 0
    for chunk in chunks:
        status, data = c.call("POST", path + "?dry_run=true", {"rules": chunk})
        if status == 422 and isinstance(data, dict) and data.get("errors"):
            for e in data["errors"]:
                i = offset + e.get("index", 0)
                where = re.sub(r"^\$\.rules\[\d+\]", f"$.rules[{i}]", e.get("path") or "")
                errors.append({**e, "index": i, "path": where})
        elif status >= 400:
            err = data if isinstance(data, dict) else {}
            from processor.errors import ProcessorError

            raise ProcessorError(err.get("code", f"HTTP_{status}"), err.get("message", str(data)), err.get("path", ""))
        offset += len(chunk)
    if errors:
        return [], errors
    results: list[dict[str, Any]] = []
    for chunk in chunks:
        sent = guarded(c, "POST", path, {"rules": chunk}, yes, as_json)
        final = wait_applied(c, site, sent["command_id"], timeout, show)
        for r in chunk:
            results.append({"rule_id": r.get("rule_id"), **final})
    return results, []
