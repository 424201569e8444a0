"""``python -m processor moodle ...``: sync, import, resync, reconcile (docs/moodle.md).

Moodle: ``MOODLE_URL``, ``MOODLE_TOKEN`` (or ``--moodle-url``, ``--moodle-token``). Processor:
``KAFKA_BOOTSTRAP_SERVERS`` and the ``TOPIC_*`` names for ``sync``; ``API_URL`` and
``ADMIN_TOKEN`` (or ``ADMIN_JWT_SECRET``) for the others.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

import click

from processor.connectors.moodle.mapping import USER_FIELDS


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--site", envvar="MOODLE_SITE_ID", required=True, help="The processor's site id for this "
                     "Moodle [MOODLE_SITE_ID]."),
        click.option("--moodle-url", envvar="MOODLE_URL", required=True, help="Moodle's root URL [MOODLE_URL]."),
        click.option("--moodle-token", envvar="MOODLE_TOKEN", required=True, show_default=False,
                     help="Web-service token of the connector's user [MOODLE_TOKEN]."),
        click.option("--user-field", envvar="MOODLE_USER_FIELD", type=click.Choice(USER_FIELDS), default="id",
                     show_default=True, help="Which Moodle user field the processor's user ids are [MOODLE_USER_FIELD]."),
        click.option("--cohort", "cohort_pairs", multiple=True, metavar="SEGMENT=IDNUMBER",
                     help="Map a segment to a cohort idnumber (default: the same string). Repeatable."),
        click.option("--cohort-map", envvar="MOODLE_COHORT_MAP", type=click.Path(exists=True, dir_okay=False,
                     path_type=Path), default=None, help="YAML/JSON file {segment: cohort idnumber} [MOODLE_COHORT_MAP]."),
        click.option("--batch-size", envvar="MOODLE_BATCH_SIZE", type=click.IntRange(1, 1000), default=100,
                     show_default=True, help="Members per Moodle call."),
        click.option("--retry-for", envvar="MOODLE_RETRY_FOR", type=float, default=300.0, show_default=True,
                     help="Seconds to keep retrying Moodle when it is unreachable or answers 5xx."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _setup(kw: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(mapping, client, writer) from the common options (removed from ``kw``)."""
    from processor.connectors.moodle.cohorts import CohortWriter, Resolver
    from processor.connectors.moodle.mapping import SiteMapping, parse_cohort_pairs
    from processor.connectors.moodle.ws import MoodleClient
    from processor.errors import ProcessorError

    try:
        mapping = SiteMapping(kw.pop("site"), kw.pop("user_field"),
                              parse_cohort_pairs(kw.pop("cohort_pairs"), kw.pop("cohort_map")))
        client = MoodleClient(kw.pop("moodle_url"), kw.pop("moodle_token"), retry_for=kw.pop("retry_for"))
    except ProcessorError as err:
        raise click.ClickException(err.message) from None
    writer = CohortWriter(client, Resolver(client, mapping), batch_size=kw.pop("batch_size"))
    return mapping, client, writer


def _errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Moodle's fatal errors and the processor's API errors end the command with their message."""

    @functools.wraps(fn)
    def run(*a: Any, **kw: Any) -> Any:
        from processor.connectors.moodle.ws import MoodleFatal, MoodleUnavailable
        from processor.errors import ProcessorError

        try:
            return fn(*a, **kw)
        except MoodleFatal as err:
            click.echo(f"FATAL: {err.message}", err=True)
            sys.exit(2)
        except MoodleUnavailable as err:
            click.echo(f"Moodle unavailable: {err.message}", err=True)
            sys.exit(3)
        except ProcessorError as err:
            raise click.ClickException(str(err)) from None

    return run


def _logging(level: str = "info") -> None:
    root = logging.getLogger()
    if root.handlers:
        return
    if sys.stderr.isatty():
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        from processor.logs import json_handler

        root.addHandler(json_handler())
        root.setLevel(level.upper())


@click.group("moodle")
def moodle() -> None:
    """Moodle connector: cohorts follow segments (sync), Moodle's users and cohorts come in (import,
    resync), drift is found and repaired (reconcile). See docs/moodle.md."""


@moodle.command("sync")
@_common
@click.option("--group", default=None, help="Consumer group (default: moodle-sync-<site>).")
@click.option("--port", envvar="MOODLE_SYNC_PORT", type=int, default=9465, show_default=True,
              help="Port of /metrics, /readyz and /healthz (0: none) [MOODLE_SYNC_PORT].")
@click.option("--poll-max", type=click.IntRange(1, 10000), default=500, show_default=True,
              help="Membership changes per batch (offsets are committed per batch).")
@click.option("--exit-when-idle", type=float, default=None, help="Stop after this many seconds without changes.")
@_errors
def sync_cmd(**kw: Any) -> None:
    """Apply membership changes to Moodle cohorts (long-running; stop with SIGTERM)."""
    from processor.config import Settings
    from processor.connectors.moodle.sync import MoodleSync, SyncConfig, SyncMetrics, install_signal_handlers
    from processor.wire import WireFormat

    _logging()
    mapping, client, writer = _setup(kw)
    metrics = SyncMetrics()
    client.on_call, client.on_retry = metrics.on_call, metrics.on_retry
    s = Settings.from_env()
    cfg = SyncConfig(mapping.site_id, s.bootstrap_servers, s.topics.membership_changes, s.topics.dead_letters,
                     kw["group"] or f"moodle-sync-{mapping.site_id}", poll_max=kw["poll_max"],
                     session_timeout_s=s.session_timeout_s, exit_when_idle_s=kw["exit_when_idle"],
                     security=s.kafka_security, wire=WireFormat.from_settings(s))
    sync = MoodleSync(cfg, writer, metrics)
    install_signal_handlers(sync)
    if kw["port"]:
        sync.serve_probes(kw["port"])
    logging.getLogger("processor.connectors.moodle").info(
        "moodle sync: site %s, %s -> %s, group %s", mapping.site_id, cfg.topic, client.url, cfg.group_id)
    sys.exit(sync.run())


def _report(data: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, sort_keys=True, default=str))
    else:
        for line in lines:
            click.echo(line)


def _run_importer(kw: dict[str, Any], run: Callable[[Any], Any]) -> Any:
    """``run(importer)`` with an Importer over the Moodle client and processor API the options
    name, under a progress display; its report."""
    from processor.connectors.moodle.importer import Importer
    from processor.connectors.moodle.processor_api import ProcessorApi
    from processor.connectors.moodle.progress import Progress

    _logging("warning")
    mapping, client, _ = _setup(kw)
    with Progress() as progress:
        return run(Importer(client, ProcessorApi.from_env(mapping.site_id), mapping, kw["page_size"], kw["gap"],
                            progress))


@moodle.command("import")
@_common
@click.option("--page-size", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="User ids per core_user_get_users_by_field call.")
@click.option("--gap", type=int, default=2000, show_default=True,
              help="Stop after this many consecutive ids without a user (past the highest seen).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_errors
def import_cmd(**kw: Any) -> None:
    """Load cohorts (as segments), custom profile fields and every user's snapshot into the processor."""
    rep = _run_importer(kw, lambda importer: importer.run_import())
    d = rep.as_dict()
    _report(d, kw["as_json"], [
        f"import {rep.site_id}: {rep.cohorts} cohorts ({rep.segments_accepted} segments upserted), "
        f"{len(rep.fields)} custom fields ({rep.field_source}), {rep.users_read} users read, {rep.published} "
        f"published, {len(rep.rejected)} rejected in {rep.seconds}s ({d['users_per_second']} users/s)",
        *[f"  note: {n}" for n in rep.notes],
        *[f"  rejected {r['user_id']}: {r['code']} at {r['path']}: {r['message']}" for r in rep.rejected[:20]]])
    if rep.rejected:
        sys.exit(1)


@moodle.command("resync")
@_common
@click.option("--page-size", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--gap", type=int, default=2000, show_default=True)
@click.option("--delete-missing", is_flag=True, help="Publish USER_DELETED for held users Moodle no longer has.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_errors
def resync_cmd(**kw: Any) -> None:
    """Publish only the users whose Moodle snapshot differs from what the processor holds."""
    rep = _run_importer(kw, lambda importer: importer.run_resync(kw["delete_missing"]))
    top = sorted(rep.differing_fields.items(), key=lambda kv: -kv[1])[:10]
    _report(rep.as_dict(), kw["as_json"], [
        f"resync {rep.site_id}: {rep.users_read} users read, {rep.differed} differed, {rep.created} new, "
        f"{rep.unchanged} unchanged, {rep.missing_in_moodle} missing in Moodle ({rep.deleted} deleted); "
        f"{rep.published} published, {len(rep.rejected)} rejected in {rep.seconds}s",
        *([f"  fields that differed: {', '.join(f'{k} ({n})' for k, n in top)}"] if top else []),
        *[f"  note: {n}" for n in rep.notes]])
    if rep.rejected:
        sys.exit(1)


@moodle.command("reconcile")
@_common
@click.option("--segment", "segments", multiple=True, help="Only these managed segments (repeatable).")
@click.option("--repair", is_flag=True, help="Apply the difference to Moodle (the sync's write path).")
@click.option("--max-removals", type=int, default=1000, show_default=True,
              help="Refuse to remove more members than this in one repair.")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the drift as Prometheus text (node_exporter textfile collector).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_errors
def reconcile_cmd(**kw: Any) -> None:
    """Compare managed segments with their cohorts; exit 1 while drift remains."""
    from processor.connectors.moodle.processor_api import ProcessorApi
    from processor.connectors.moodle.progress import Progress
    from processor.connectors.moodle.reconcile import Reconciler, write_metrics

    _logging("warning")
    mapping, client, writer = _setup(kw)
    with Progress() as progress:
        rep = Reconciler(ProcessorApi.from_env(mapping.site_id), writer, progress).run(
            list(kw["segments"]) or None, kw["repair"], kw["max_removals"])
    if kw["metrics_file"]:
        write_metrics(rep, kw["metrics_file"])
    lines = [f"reconcile {rep.site_id}: {len(rep.segments)} managed segments, drift {rep.drift}"
             + (f", repaired {rep.repaired}, remaining {rep.remaining}" if rep.after_repair is not None else "")
             + f" ({rep.seconds}s)"]
    for s in rep.segments:
        lines.append(f"  {s.segment_id} -> cohort {s.cohort_idnumber}: {s.members} members, {s.cohort_members} in "
                     f"Moodle, missing {len(s.missing)}, extra {len(s.extra)}"
                     + (f", unmapped {len(s.unmapped)}" if s.unmapped else "") + (f" ({s.error})" if s.error else ""))
    if rep.refused:
        lines.append(f"  refused: {rep.refused}")
    _report(rep.as_dict(), kw["as_json"], lines)
    sys.exit(1 if rep.remaining else 0)
