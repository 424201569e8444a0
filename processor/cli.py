"""``python -m processor``: worker, topics, dev runner and admin/ops tools."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from processor.config import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Segment automation stream processor for a Moodle-based LMS.

    Environment: KAFKA_BOOTSTRAP_SERVERS, STATE_DIR, WEB_PORT, ADMIN_JWT_SECRET
    (see README for topic and partition overrides).
    """


@main.command()
@click.option("-l", "--loglevel", default=None, help="crit|error|warn|info|debug")
def worker(loglevel: str | None) -> None:
    """Run a Faust worker (honours KAFKA_BOOTSTRAP_SERVERS, STATE_DIR, WEB_PORT)."""
    from processor.worker import run_worker

    s = Settings.from_env()
    if loglevel:
        s = s.with_(log_level=loglevel)
    run_worker(s)


@main.group()
def topics() -> None:
    """Manage the processor's topics."""


@topics.command("create")
def topics_create() -> None:
    """Create every topic with its partition count (idempotent; verifies existing ones)."""
    from processor.topics import ensure_topics, topic_specs

    s = Settings.from_env()
    created = set(ensure_topics(s))
    for sp in topic_specs(s):
        state = "created" if sp.name in created else "exists"
        click.echo(f"{state:8} {sp.name} ({sp.partitions} partitions)")


@main.command()
@click.option("--once", is_flag=True, help="Seed, wait for the expected changes, then exit (smoke test).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait in --once mode.")
def dev(once: bool, timeout: float) -> None:
    """Embedded broker + topics + worker + demo seed; prints membership changes live."""
    from processor.dev import run_dev

    sys.exit(run_dev(once=once, timeout=timeout))


@main.group()
def commands() -> None:
    """Automation commands (catalog and rules)."""


@commands.command("publish")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for and print the results.")
@click.option("--timeout", default=60.0, show_default=True)
def commands_publish(file: Path, wait: bool, timeout: float) -> None:
    """Publish the commands in FILE (JSON or YAML) to the commands topic."""
    from processor.client import ContractProducer
    from processor.errors import ProcessorError
    from processor.publish import load_command_file

    s = Settings.from_env()
    try:
        cmds = load_command_file(file)
    except ProcessorError as err:
        raise click.ClickException(str(err)) from None
    prod = ContractProducer(s.bootstrap_servers, s.topics)
    for c in cmds:
        prod.command(c)
    prod.flush()
    click.echo(f"published {len(cmds)} command(s) to {s.topics.commands}")
    if not wait:
        return
    results = wait_results(s, {c.command_id for c in cmds}, timeout)
    rejected = 0
    for c in cmds:
        r = results.get(c.command_id)
        if r is None:
            click.echo(f"PENDING  {c.payload_type:26} {c.command_id}")
            rejected += 1
        elif r.status == "ACCEPTED":
            click.echo(f"ACCEPTED {c.payload_type:26} {c.command_id}")
        else:
            rejected += 1
            click.echo(f"REJECTED {c.payload_type:26} {c.command_id} {r.code}: {r.message}")
    if rejected:
        sys.exit(1)


def wait_results(s: Settings, ids: set[str], timeout: float) -> dict:  # type: ignore[type-arg]
    from processor.client import TopicReader
    from processor.contract.codec import decode_command_result

    reader = TopicReader(s.bootstrap_servers, s.topics.command_results)
    found = {}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not ids <= set(found):
            for _, v in reader.poll_batch():
                if v is None:
                    continue
                r = decode_command_result(v)
                if r.command_id in ids:
                    found[r.command_id] = r
    finally:
        reader.close()
    return found


@main.command()
@click.option("--emit", "mode", type=click.Choice(["diff", "snapshot"]), default="diff", show_default=True,
              help="diff: only changes vs the output topic; snapshot: also ADDED for every member.")
@click.option("--run-id", default=None, help="Fixed id (default: derived from the input end offsets).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def rebuild(mode: str, run_id: str | None, as_json: bool) -> None:
    """Rebuild all membership state from the input topics (stop every worker first)."""
    import json

    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    from processor.rebuild import RebuildError, run_rebuild

    class RateColumn(ProgressColumn):
        def render(self, task):  # type: ignore[no-untyped-def]
            return Text(f"{task.speed or 0:,.0f}/s")

    s = Settings.from_env()
    cols = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            RateColumn(), TimeRemainingColumn()]
    try:
        with Progress(*cols, transient=as_json) as progress:
            report = run_rebuild(s, mode, run_id, progress=progress)
    except RebuildError as err:
        raise click.ClickException(str(err)) from None
    if as_json:
        click.echo(json.dumps(report.as_dict(), sort_keys=True))
    else:
        d = report.as_dict()
        click.echo(f"rebuild {d['run_id']}: {d['events']} events ({d['skipped_invalid']} invalid), "
                   f"{d['users']} users, {d['changes']} changes {d['by_change']} in {d['seconds']}s "
                   f"({d['events_per_second']} events/s)")


@main.command("export")
def export_cmd() -> None:
    """Print every stored user (profile + managed memberships) as sorted JSON lines."""
    from processor.rebuild import export_state

    for line in export_state(Settings.from_env()):
        click.echo(line)


@main.group()
def rules() -> None:
    """Rule language tools (offline: no broker needed)."""


@rules.command("eval")
@click.option("--catalog", "catalog_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="JSON list of custom profile fields [{shortname, datatype, options}].")
def rules_eval(catalog_path: Path | None) -> None:
    """Evaluate JSON lines {"condition", "profile", "now"?, "explain"?} from stdin, one result per line."""
    import json

    from processor.errors import ProcessorError
    from processor.rules.offline import evaluate_lines, load_catalog

    try:
        fields = load_catalog(json.loads(catalog_path.read_text()) if catalog_path else [])
    except (ProcessorError, ValueError) as err:
        raise click.ClickException(f"catalog: {err}") from None
    for out in evaluate_lines(sys.stdin, fields):
        click.echo(out)


@rules.command("validate")
@click.argument("condition")
@click.option("--catalog", "catalog_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None)
def rules_validate(condition: str, catalog_path: Path | None) -> None:
    """Compile CONDITION (JSON tree or text form); print the canonical JSON or the errors."""
    import json

    from processor.rules.compiler import compile_condition
    from processor.rules.exceptions import CompileError, RuleError
    from processor.rules.offline import load_catalog
    from processor.rules.text import condition_from_any, to_text

    fields = load_catalog(json.loads(catalog_path.read_text()) if catalog_path else [])
    try:
        tree = condition_from_any(condition)
        compile_condition(tree, fields)
    except CompileError as err:
        for e in err.errors:
            click.echo(f"{e.code} at {e.path}: {e.message}", err=True)
        sys.exit(1)
    except RuleError as e:
        click.echo(f"{e.code} at {e.path}: {e.message}", err=True)
        sys.exit(1)
    click.echo(json.dumps(tree))
    click.echo(to_text(tree))


@main.group()
def changes() -> None:
    """Membership changes output."""


@changes.command("tail")
@click.option("--site", default=None, help="Only this site.")
def changes_tail(site: str | None) -> None:
    """Print membership changes from the beginning, then follow (Ctrl-C to stop)."""
    from processor.client import TopicReader
    from processor.contract.codec import decode_membership_change
    from processor.dev import format_change

    s = Settings.from_env()
    reader = TopicReader(s.bootstrap_servers, s.topics.membership_changes)
    try:
        for ch in reader.stream(decode_membership_change):
            if site is None or ch.site_id == site:
                click.echo(format_change(ch))
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()


if __name__ == "__main__":  # pragma: no cover
    main()
