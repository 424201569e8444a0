"""``python -m processor``: worker, topics, dev runner and admin/ops tools."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from processor.admin_client import seg  # every id in an API path is quoted as one segment
from processor.cli_support import REJECTED, TIMED_OUT, CliError, iso_time, processor_error, require_kafka
from processor.cli_support import site_option as site_opt
from processor.config import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """Segment automation stream processor for a Moodle-based LMS.

    Environment: KAFKA_BOOTSTRAP_SERVERS, STATE_DIR, WEB_PORT, ADMIN_JWT_SECRET
    (see README for topic and partition overrides); the admin commands: API_URL, ADMIN_TOKEN.

    Exit codes: 0 ok, 1 error, 2 usage, 3 Kafka or the API unreachable, 4 a command was
    rejected, 5 timed out waiting for a result (README "Exit codes").
    """
    # services (a worker, the Moodle sync) log librdkafka's lines with their own (JSON) logging
    if ctx.invoked_subcommand not in ("worker", "moodle"):
        from processor.runtime.clients import cli_kafka_log

        cli_kafka_log()


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
@click.option("--dry-run", is_flag=True, help="Print the plan and the checks of existing topics; change nothing.")
def topics_create(dry_run: bool) -> None:
    """Create every topic with its partition count and configs (idempotent), and check existing
    ones: partitions, replicas, cleanup.policy, retention.ms, min.insync.replicas.

    Exit status 1 on any drift or when a topic cannot be created with its configs
    (docs/deploy.md#topics-and-their-configs).
    """
    from processor.topics import TopicCreateError, ensure_topics

    s = Settings.from_env()
    require_kafka(s.bootstrap_servers, security=s.kafka_security)
    try:
        report = ensure_topics(s, dry_run=dry_run, enforce=False)
    except TopicCreateError as err:
        raise click.ClickException(err.message) from None
    how = "REPLICATION_FACTOR" if s.replication_factor else f"min(3, {report.brokers} broker(s))"
    click.echo(f"{'plan' if dry_run else 'topics'}: replication factor {report.replication_factor} ({how})")
    click.echo(report.table())
    if report.unverifiable:
        click.echo(f"note: {len(report.unverifiable)} config(s) not verifiable on this broker (see above); "
                   "check them with your platform's tools")
    if s.schema_registry.url:
        _register_schemas(s, dry_run)
    if report.drift:
        click.echo(f"error: {len(report.drift)} drift(s): the topics differ from what the processor needs "
                   "(docs/deploy.md#topics-and-their-configs)", err=True)
        sys.exit(1)


def _register_schemas(s: Settings, dry_run: bool) -> None:
    """``topics create`` with SCHEMA_REGISTRY_URL: register every contract schema under its subject
    (compatibility FULL_TRANSITIVE), so workers and tools frame records with their ids."""
    from processor.errors import ProcessorError
    from processor.wire import COMPATIBILITY, register_schemas, subjects

    if dry_run:
        for subject in subjects(s.topics).values():
            click.echo(f"plan: register {subject} at {s.schema_registry.url} (compatibility {COMPATIBILITY})")
        return
    try:
        for r in register_schemas(s):
            click.echo(f"schema: {r.subject} id {r.schema_id} (compatibility {r.compatibility})")
    except ProcessorError as err:
        raise processor_error(err) from None


@main.group(invoke_without_command=True)
@click.option("--once", is_flag=True, help="Seed, wait for the expected changes, then exit (smoke test).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait in --once mode.")
@click.pass_context
def dev(ctx: click.Context, once: bool, timeout: float) -> None:
    """Embedded broker + topics + worker + demo seed; prints membership changes live (make run).

    Ctrl-C stops the worker, then the broker. `dev token` gives the CLI a token for that run.
    """
    if ctx.invoked_subcommand is not None:
        return
    from processor.broker import EmbeddedBrokerMissing
    from processor.dev import run_dev

    try:
        code = run_dev(once=once, timeout=timeout)
    except EmbeddedBrokerMissing as err:  # the [embedded] extra is not installed
        raise click.ClickException(str(err)) from None
    sys.exit(code)


@dev.command("token")
@click.option("--site", default="demo", show_default=True, help="The token's site.")
@click.option("--export", "as_export", is_flag=True,
              help="Print `export` lines (API_URL, ADMIN_TOKEN, KAFKA_BOOTSTRAP_SERVERS) for eval.")
def dev_token(site: str, as_export: bool) -> None:
    """A site_admin token for the running `make run` (started in this directory).

    It asks that run's worker (its dev login: loopback only, enabled only by make run), found
    through .state/dev-run.json, which holds no secret. Usage:
    eval "$(python -m processor dev token --export)"
    """
    from processor.dev import fetch_dev_token

    try:
        run, token = fetch_dev_token(site)
    except Exception as err:  # noqa: BLE001 - ProcessorError: no run here, or it does not answer
        raise processor_error(err) from None
    if as_export:
        from processor.dev import export_lines

        for line in export_lines(run["api_url"], token, run["bootstrap"]):
            click.echo(line)
    else:
        click.echo(token)


@main.group()
def commands() -> None:
    """Automation commands (catalog and rules)."""


@commands.command("publish")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait for and print the results.")
@click.option("--timeout", default=60.0, show_default=True)
@click.option("--token/--no-token", "token", default=True, show_default=True,
              help="Attach a JWT to each command (ADMIN_TOKEN, or minted from ADMIN_JWT_SECRET), as workers "
                   "with COMMANDS_REQUIRE_TOKEN=1 require.")
def commands_publish(file: Path, wait: bool, timeout: float, token: bool) -> None:
    """Publish the commands in FILE (JSON or YAML) to the commands topic."""
    from processor.client import ContractProducer
    from processor.errors import ProcessorError
    from processor.publish import CommandFileError, encoded_commands, load_command_file, with_tokens

    s = Settings.from_env()
    try:
        cmds = load_command_file(file)
        if token:
            cmds = with_tokens(cmds)
        encoded = encoded_commands(cmds)  # every problem of the file, before anything is sent
    except CommandFileError as err:
        for e in err.errors:
            click.echo(str(e), err=True)
        raise CliError(f"{file}: {len(err.errors)} problem(s); nothing was published") from None
    if token and s.commands_require_token and any(c.auth_token is None for c in cmds):
        raise CliError("COMMANDS_REQUIRE_TOKEN=1: set ADMIN_TOKEN (a JWT for the site) or "
                       "ADMIN_JWT_SECRET to mint one")
    require_kafka(s.bootstrap_servers, security=s.kafka_security)
    prod = ContractProducer.from_settings(s)
    try:
        if prod.wire.framed:  # with a Schema Registry: the framed bytes (validated above as plain Avro)
            encoded = [prod.wire.encode_command(c) for c in cmds]
    except ProcessorError as err:
        raise processor_error(err) from None
    for c, value in zip(cmds, encoded):
        prod.raw(s.topics.commands, c.site_id.encode(), value)
    prod.flush()
    click.echo(f"published {len(cmds)} command(s) to {s.topics.commands}")
    if not wait:
        return
    from processor.cli_progress import wait_results_applied

    decisions, latest = wait_results_applied(s, {c.command_id for c in cmds}, timeout, show=sys.stderr.isatty())
    rejected = pending = applying = failed = 0
    for c in cmds:
        r, p = decisions.get(c.command_id), latest.get(c.command_id)
        if r is None:
            click.echo(f"PENDING  {c.payload_type:26} {c.command_id}")
            pending += 1
        elif r.status == "ACCEPTED":
            if p is not None and p.status == "APPLIED":
                done = f"applied: {p.users_evaluated:,} users evaluated, +{p.users_added:,} -{p.users_removed:,}"
            elif p is not None and p.code == "BACKFILL_FAILED":
                failed += 1
                done = f"{p.code}: {p.message}"
            else:
                applying += 1
                done = (f"applying: {p.partitions_done} of {p.partitions_total} partitions done" if p is not None
                        else "applying")
            click.echo(f"ACCEPTED {c.payload_type:26} {c.command_id} {done}")
        else:
            rejected += 1
            click.echo(f"REJECTED {c.payload_type:26} {c.command_id} {r.code}: {r.message}")
    if rejected:
        sys.exit(REJECTED)
    if failed:
        sys.exit(1)
    if pending or applying:
        click.echo(f"within {timeout:g} s, {pending} command(s) had no result and {applying} were still applying: "
                   "they may still be applied (see `python -m processor changes tail`, or wait longer with "
                   "--timeout)", err=True)
        sys.exit(TIMED_OUT)


REBUILD_ENV = """\b
Environment (the same values the workers run with):
  KAFKA_BOOTSTRAP_SERVERS   the Kafka to read and write (default localhost:9092)
  APP_ID                    the workers' consumer group and table changelog
                            (<APP_ID>-users-changelog; default segment-automation)
  TOPIC_USER_EVENTS, TOPIC_CONTROL, TOPIC_CATALOG
                            the inputs it folds
  TOPIC_MEMBERSHIP_CHANGES  the output it compares with and writes to
  PARTITIONS                checked against the topics (default 8)
Stop every worker first; see docs/operations.md (rebuild).
"""


@main.command(epilog=REBUILD_ENV)
@click.option("--emit", "mode", type=click.Choice(["diff", "snapshot"]), default="diff", show_default=True,
              help="diff: only changes vs the output topic; snapshot: also ADDED for every member.")
@click.option("--run-id", default=None, help="Fixed id (default: derived from the input end offsets).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Processes sharing the partitions (default: one per core, at most one per partition).")
def rebuild(mode: str, run_id: str | None, as_json: bool, jobs: int | None) -> None:
    """Rebuild all membership state from the input topics (stop every worker first)."""
    import json

    from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    from processor.rebuild import RebuildError, run_rebuild

    class RateColumn(ProgressColumn):
        def render(self, task):  # type: ignore[no-untyped-def]
            return Text(f"{task.speed or 0:,.0f}/s")

    s = Settings.from_env()
    require_kafka(s.bootstrap_servers, security=s.kafka_security)
    cols = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            RateColumn(), TimeRemainingColumn()]
    try:
        with Progress(*cols, transient=as_json) as progress:
            report = run_rebuild(s, mode, run_id, progress=progress, jobs=jobs)
    except RebuildError as err:
        raise CliError(f"{err.code}: {err.message}") from None
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

    s = Settings.from_env()
    require_kafka(s.bootstrap_servers, security=s.kafka_security)
    for line in export_state(s):
        click.echo(line)


@main.group()
def rules() -> None:
    """Rules: offline tools (eval, validate) and admin commands via the HTTP API."""


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


# ---------------------------------------------------------------- admin (HTTP API)

def _client(site: str):  # type: ignore[no-untyped-def]
    from processor.admin_client import AdminClient
    from processor.errors import ProcessorError

    try:
        return AdminClient.from_env(site)
    except ProcessorError as err:
        raise processor_error(err) from None


def _out(data: object, as_json: bool, columns: list[str] | None = None, rows: list[list[object]] | None = None,
         title: str = "") -> None:
    import json

    if as_json or columns is None:
        click.echo(json.dumps(data, indent=None if as_json else 2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows or []:
        t.add_row(*[str(x) for x in r])
    Console().print(t)


def _api(fn):  # type: ignore[no-untyped-def]
    import functools

    from processor.errors import ProcessorError

    @functools.wraps(fn)
    def run(*a, **kw):  # type: ignore[no-untyped-def]
        try:
            return fn(*a, **kw)
        except ProcessorError as err:
            raise processor_error(err) from None

    return run


def _final(final: dict) -> None:  # type: ignore[type-arg]
    """Exit 4 when a command was rejected, 5 when it was not applied within the wait."""
    from processor.cli_progress import exit_for

    exit_for(final)


json_opt = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@main.group()
def segments() -> None:
    """Segments of a site (via a worker's HTTP API: API_URL, ADMIN_TOKEN or ADMIN_JWT_SECRET)."""


@segments.command("list")
@site_opt
@json_opt
@_api
def segments_list(site: str, as_json: bool) -> None:
    """Segments with managed flag, member and rule counts."""
    data = _client(site).ok("GET", f"/sites/{seg(site)}/segments")
    _out(data, as_json, ["segment", "name", "managed", "members", "rules"],
         [[s["segment_id"], s["name"], s["managed"], s["member_count"], s["rule_count"]] for s in data["segments"]],
         f"site {site}: {data['users']} stored users")


def _automation(site: str, segment: str, body: dict,  # type: ignore[type-arg]
                as_json: bool, yes: bool = False) -> None:
    from processor.catalog_cli import guarded  # a large change (409 LARGE_CHANGE) is shown and confirmed
    from processor.cli_progress import wait_applied

    c = _client(site)
    res = guarded(c, "POST", f"/sites/{seg(site)}/segments/{seg(segment)}/automation", body, yes, as_json)
    final = wait_applied(c, site, res["command_id"], show=not as_json)  # a progress bar until APPLIED
    _out(final, True)
    _final(final)


yes_opt = click.option("--yes", "-y", is_flag=True,
                       help="Apply a large change (LARGE_CHANGE) without asking; it is still shown.")


@segments.command("manage")
@click.argument("segment")
@site_opt
@yes_opt
@json_opt
@_api
def segments_manage(segment: str, site: str, yes: bool, as_json: bool) -> None:
    """Enable automation of SEGMENT (reconciles its members with the rules)."""
    _automation(site, segment, {"enabled": True}, as_json, yes)


@segments.command("unmanage")
@click.argument("segment")
@site_opt
@click.option("--remove-members", is_flag=True, help="Also remove every automation member.")
@yes_opt
@json_opt
@_api
def segments_unmanage(segment: str, site: str, remove_members: bool, yes: bool, as_json: bool) -> None:
    """Disable automation of SEGMENT (members stay unless --remove-members)."""
    _automation(site, segment, {"enabled": False, "remove_members": remove_members}, as_json, yes)


@main.command("members")
@click.argument("segment")
@site_opt
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="Members per page.")
@click.option("--cursor", default="", help="Start at this page (the cursor a previous page printed).")
@click.option("--all", "all_pages", is_flag=True, help="Follow every page (progress bar).")
@click.option("--search", "-q", "search", default="", help="Only members whose id, first/last/full name or e-mail "
              "starts with this (case-insensitive).")
@click.option("--csv", "as_csv", is_flag=True, help="The whole list as CSV, streamed (not with --search, "
              "--cursor, --all, --json).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --csv: write to this file (left out if the download is cut short) instead of stdout.")
@json_opt
@_api
def members_cmd(segment: str, site: str, limit: int, cursor: str, all_pages: bool, search: str, as_csv: bool,
                output: Path | None, as_json: bool) -> None:
    """Members of SEGMENT with name, e-mail, the rules that matched and since when (local time, ISO-8601)."""
    c = _client(site)
    if as_csv:  # processor/members_cli.py
        from processor.members_cli import export_csv

        if search or cursor or all_pages or as_json:
            raise click.UsageError("--csv exports the whole list: not with --search, --cursor, --all or --json")

        n = export_csv(c, site, segment, output)
        if output is not None:
            click.echo(f"{segment}: wrote {n} bytes to {output}", err=True)
        return
    got: list[dict] = []  # type: ignore[type-arg]
    total = next((s["member_count"] for s in c.ok("GET", f"/sites/{seg(site)}/segments")["segments"]
                  if s["segment_id"] == segment), None)
    shown_of = None if search else total  # a search says how many it found, not how many match
    from rich.progress import Progress

    with Progress(transient=True, disable=not all_pages or as_json) as progress:
        task = progress.add_task("fetching members", total=shown_of)
        while True:
            q = f"&q={seg(search)}" if search else ""
            page = c.ok("GET", f"/sites/{seg(site)}/segments/{seg(segment)}/members"
                               f"?limit={min(limit, 500)}&cursor={seg(cursor)}{q}")
            got += page["members"]
            progress.advance(task, len(page["members"]))
            cursor = page["next_cursor"]
            if not cursor or not all_pages:
                break
    _out({"members": got, "next_cursor": cursor, "total": total}, as_json,
         ["user", "name", "e-mail", "since", "rules"],
         [[m["user_id"], m.get("name") or "-", m.get("email") or "-", iso_time(m["since"]),
           ",".join(m["matched_rule_ids"])] for m in got],
         f"{segment}: showing {len(got)} of {total if total is not None else '?'} member(s)"
         + (f" that match {search!r}" if search else ""))
    if cursor and not as_json:
        click.echo(f"more members: next page with --cursor {cursor}, every page with --all", err=True)


@main.command("explain")
@click.argument("user")
@click.argument("segment")
@site_opt
@json_opt
@_api
def explain_cmd(user: str, segment: str, site: str, as_json: bool) -> None:
    """Why USER is (or is not) in SEGMENT: each rule's evaluation tree."""
    data = _client(site).ok("GET", f"/sites/{seg(site)}/users/{seg(user)}/segments/{seg(segment)}/explain")
    if as_json:
        _out(data, True)
        return
    person = " ".join(x for x in (data.get("name"), f"<{data['email']}>" if data.get("email") else None) if x)
    click.echo(f"{user}{f' ({person})' if person else ''} in {segment}: member={data['member']} "
               f"managed={data['managed']} suspended={data['suspended']} deleted={data['deleted']}")

    def show(node: dict, depth: int) -> None:  # type: ignore[type-arg]
        pad = "  " * depth
        mark = "✔" if node["result"] else "✘"
        for k in ("all", "any"):
            if k in node:
                click.echo(f"{pad}{mark} {k}")
                for child in node[k]:
                    show(child, depth + 1)
                return
        if "not" in node:
            click.echo(f"{pad}{mark} not")
            show(node["not"], depth + 1)
            return
        val = f" {node['value']!r}" if "value" in node else ""
        click.echo(f"{pad}{mark} {node['field']} {node['op']}{val}   (profile: {node['actual']!r})")

    for r in data["rules"]:
        click.echo(f"rule {r['rule_id']} [{r['status']}]: {'match' if r.get('result') else 'no match'}")
        if "tree" in r:
            show(r["tree"], 1)


@rules.command("list")
@site_opt
@json_opt
@_api
def rules_list(site: str, as_json: bool) -> None:
    """Rules with status (enabled, disabled, broken + why)."""
    from processor.rules.text import to_text

    data = _client(site).ok("GET", f"/sites/{seg(site)}/rules")

    def text(cond: object) -> str:
        try:
            return to_text(cond)
        except Exception:  # noqa: BLE001 - show JSON when the printer cannot
            import json

            return json.dumps(cond)

    _out(data, as_json, ["rule", "segment", "status", "condition"],
         [[r["rule_id"], r["segment_id"], r["status"] + (f" ({r['broken_reason']})" if r["broken_reason"] else ""),
           text(r["condition"])] for r in data["rules"]])


@rules.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@site_opt
@click.option("--dry-run", is_flag=True,
              help="Print the combined impact of the whole file (per segment: would add, would remove); "
                   "change nothing.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for each batch to be APPLIED.")
@yes_opt
@json_opt
@_api
def rules_apply(file: Path, site: str, dry_run: bool, timeout: float, yes: bool, as_json: bool) -> None:
    """Create or update the rules in FILE (YAML/JSON list of {rule_id, segment_id, name, condition, enabled})
    as Batch commands of up to 1,000 rules: every rule is validated first (nothing is sent if one is
    invalid), then each batch is applied with one backfill per partition (a large change is shown and
    confirmed, or --yes); waits until APPLIED."""
    import yaml

    from processor.catalog_cli import rules_dry_run
    from processor.cli_progress import apply_rules

    c = _client(site)
    doc = yaml.safe_load(file.read_text())
    items = doc.get("rules", doc) if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
        raise CliError(f"{file}: expected a list of rules (or {{rules: [...]}})")
    if dry_run:
        rules_dry_run(c, site, items, as_json)
        return
    if not items:
        _out([], as_json, ["rule", "status", "state", "code", "message"], [])
        return
    results, errors = apply_rules(c, site, items, timeout, show=not as_json, yes=yes, as_json=as_json)
    if errors:
        _out({"valid": False, "errors": errors}, as_json, ["rule", "code", "path", "message"],
             [[e.get("rule_id") or "", e.get("code") or "", e.get("path") or "", e.get("message") or ""]
              for e in errors], f"{file}: {len(errors)} invalid rule(s); nothing was sent")
        sys.exit(REJECTED)
    _out(results, as_json, ["rule", "status", "state", "code", "message"],
         [[x["rule_id"], x["status"], x.get("state", ""), x.get("code") or "", x.get("message") or ""]
          for x in results])
    for final in {x["command_id"]: x for x in results}.values():
        _final(final)


@rules.command("delete")
@click.argument("rule_id")
@site_opt
@yes_opt
@json_opt
@_api
def rules_delete(rule_id: str, site: str, yes: bool, as_json: bool) -> None:
    """Delete RULE_ID (its members are re-evaluated; asks first when that is a large change)."""
    from processor.catalog_cli import guarded
    from processor.cli_progress import wait_applied

    c = _client(site)
    res = guarded(c, "DELETE", f"/sites/{seg(site)}/rules/{seg(rule_id)}", None, yes, as_json)
    final = wait_applied(c, site, res["command_id"], show=not as_json)
    _out(final, True)
    _final(final)


@rules.command("preview")
@click.argument("condition")
@site_opt
@click.option("--segment", required=True)
@click.option("--rule-id", default=None, help="Preview an edit of this existing rule.")
@json_opt
@_api
def rules_preview(condition: str, site: str, segment: str, rule_id: str | None, as_json: bool) -> None:
    """How many users CONDITION (text or JSON) would add/remove in SEGMENT, with samples."""
    body = {"segment_id": segment, "condition": condition, **({"rule_id": rule_id} if rule_id else {})}
    data = _client(site).ok("POST", f"/sites/{seg(site)}/rules/preview", body)
    if as_json:
        _out(data, True)
        return
    if data.get("managed") is False:
        click.echo(f"automation is off for {segment}: saving this rule changes nobody until it is turned on "
                   f"(segments manage {segment}); with automation on:")
    click.echo(f"evaluated {data['evaluated']} users: +{data['added']} added, -{data['removed']} removed")

    def who(users: list[dict]) -> str:  # type: ignore[type-arg]
        return ", ".join(u["user_id"] + (f" ({u['name']})" if u.get("name") else "") for u in users) or "-"

    click.echo(f"  added e.g.:   {who(data.get('sample_added_users', []))}")
    click.echo(f"  removed e.g.: {who(data.get('sample_removed_users', []))}")


@main.group()
def changes() -> None:
    """Membership changes output."""


@changes.command("tail")
@click.option("--site", default=None, help="Only this site.")
def changes_tail(site: str | None) -> None:
    """Print membership changes from the beginning, then follow (Ctrl-C to stop)."""
    from processor.client import TopicReader
    from processor.dev import format_change
    from processor.errors import ProcessorError
    from processor.wire import WireFormat

    s = Settings.from_env()
    require_kafka(s.bootstrap_servers, security=s.kafka_security)
    wire = WireFormat.from_settings(s)
    reader = TopicReader.from_settings(s, s.topics.membership_changes)
    try:
        for ch in reader.stream(wire.decode_membership_change):
            if site is None or ch.site_id == site:
                click.echo(format_change(ch))
    except KeyboardInterrupt:
        pass
    except ProcessorError as err:  # an undecodable record, or a registry that does not answer
        raise processor_error(err) from None
    finally:
        reader.close()


from processor.connectors.moodle.cli import moodle as _moodle  # noqa: E402 - the Moodle connector (docs/moodle.md)

main.add_command(_moodle)

from processor.users_cli import users as _users  # noqa: E402 - users upsert/delete: user events by hand

main.add_command(_users)

# segments create/rename/delete/import, fields, settings (processor/catalog_cli.py)
from processor.catalog_cli import register as _catalog_cli  # noqa: E402

_catalog_cli(main, segments)
from processor.history_cli import register as _history  # noqa: E402 - history user|segment, audit (docs/api.md)

_history(main)

if __name__ == "__main__":  # pragma: no cover
    main()
