"""The admin console end to end: Playwright driving Debian's Chromium against a real worker.

Flow: sign in by pasting a token, enable a segment, build a rule with the form (custom MENU
field), preview it, save it, see the members and an explain tree, edit it (text form round
trip, a second condition), delete it; a rule the API refuses shows its error at the offending
condition, and a command the processor rejects shows as rejected with its message. The page
makes no request outside 127.0.0.1 and carries no secret. Screenshots of each screen go to
docs/screenshots/.

The first hour (issue 22): what the form checks before anything is sent (ids, long names, empty
values, negative durations), values kept across operator changes, an unmanaged segment said as
such (with a way to turn automation on), no stale banners or previews, the Commands panel and the
members tab's segment kept across a reload, and "why is this user (not) in the segment" for any
user id.

Never downloads a browser: Chromium comes from Debian (``apt-get install -y chromium``).
Without /usr/bin/chromium these tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from processor.api.auth import make_token
from tests.support.harness import (TEST_JWT_SECRET, Cluster, WorkerProcess, fold_membership, make_command,
                               make_event)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
TOKEN_KEY = "segment-automation.console.token"
LEVELS = ["Junior", "Senior", "Lead"]
VALUE = re.compile(r"^Value \(condition \d+\)$")  # labels carry a visually hidden "(condition N)"


def http(method: str, url: str, token: str | None = None,
         body: Any = None) -> tuple[int, Any, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            raw, status, headers = r.read(), r.status, dict(r.headers)
    except urllib.error.HTTPError as e:
        raw, status, headers = e.read(), e.code, dict(e.headers)
    try:
        return status, json.loads(raw), headers
    except ValueError:
        return status, raw.decode(errors="replace"), headers


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} "
                    "(install it with `apt-get install -y chromium`; "
                    ".ci/run does); browser tests need it and never download a browser")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install -e '.[dev]')")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def members_of(cluster: Cluster, site: str, segment: str) -> set[str]:
    return fold_membership(cluster.changes_for(site)).get((site, segment), set())


@pytest.fixture
def console_site(cluster: Cluster, site: str) -> str:
    """A site with a custom MENU field, a managed segment with a rule, two unmanaged ones (the empty
    "archive" sorts first), 12 users and one deleted user."""
    cmds = [
        make_command(site, "UpsertProfileField", shortname="level", name="Level", datatype="MENU",
                     options=LEVELS),
        make_command(site, "UpsertSegment", segment_id="archive", name="Archive"),
        make_command(site, "UpsertSegment", segment_id="sales", name="Sales"),
        make_command(site, "UpsertSegment", segment_id="seniors", name="Senior staff"),
        make_command(site, "EnableSegmentAutomation", segment_id="sales"),
        make_command(site, "CreateRule", rule_id="sales-dept", segment_id="sales", name="Sales department",
                     condition={"field": "department", "op": "equals", "value": "Sales"}, enabled=True),
        # a rule whose custom field is then deleted: it stays, marked broken with the reason
        make_command(site, "UpsertProfileField", shortname="team", name="Team", datatype="TEXT"),
        make_command(site, "CreateRule", rule_id="legacy-team", segment_id="sales", name="Legacy team rule",
                     condition={"field": "profile_field_team", "op": "equals", "value": "Alpha"},
                     enabled=True),
        make_command(site, "DeleteProfileField", shortname="team"),
    ]
    for c in cmds:
        cluster.producer.command(c)
    for i in range(12):  # u00-u05 in Sales; levels cycle Junior, Senior, Lead
        cluster.producer.user_event(make_event(site, f"u{i:02d}", firstname=f"User {i}",
                                               department="Sales" if i < 6 else "HR",
                                               profile_field_level=LEVELS[i % 3]))
    cluster.producer.user_event(make_event(site, "gone", department="Sales"))
    cluster.producer.user_event(make_event(site, "gone", "USER_DELETED"))  # stored as a tombstone, not a user
    cluster.producer.flush()
    results = cluster.wait_results([c.command_id for c in cmds])
    assert all(r.status == "ACCEPTED" for r in results.values()), results
    want = {f"u{i:02d}" for i in range(6)}
    cluster.wait(lambda: members_of(cluster, site, "sales") == want, what="seeded Sales members")
    return site


def command(page: Any, label: str) -> Any:
    """The commands panel's entry for a command."""
    return page.locator("#command-list li", has_text=label)


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_console_end_to_end(cluster: Cluster, console_site: str, browser: Any) -> None:
    from playwright.sync_api import expect

    site = console_site
    base = cluster.workers[0].url
    token = make_token(TEST_JWT_SECRET, "alice", site, ["site_admin"])
    seniors_v1 = {f"u{i:02d}" for i in range(12) if i % 3}  # Senior or Lead
    seniors_v2 = {u for u in seniors_v1 if int(u[1:]) < 6}  # ... and in Sales

    # -- the page and its assets carry no secret and no inline code; dev login is off here
    status, html, headers = http("GET", base + "/console/")
    assert status == 200 and "text/html" in headers["Content-Type"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert 'data-dev-login="0"' in html
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    assert scripts and all(body == "" for body in scripts), "no inline scripts"
    assert not re.search(r"\son[a-z]+\s*=", html), "no inline event handlers"
    for path in ("/console/", "/console/app.js", "/console/app.css", "/console/manage.js", "/console/people.js",
                 "/console/progress.js", "/console/history.js"):
        text = http("GET", base + path)[1]
        assert TEST_JWT_SECRET not in text and "eyJ" not in text, f"secret or token in {path}"
        # (the SVG namespace name is an identifier, never fetched: the chart of history.js needs it)
        assert not re.search(r"https?://(?!127\.0\.0\.1|www\.w3\.org/2000/svg\b)", text), f"external URL in {path}"
    assert http("GET", base + f"/console/dev-token?site={site}")[0] == 404

    # -- the field catalog the editor is built from (GET /sites/{site}/fields)
    assert http("GET", f"{base}/sites/{site}/fields")[0] == 401
    status, catalog, _ = http("GET", f"{base}/sites/{site}/fields", token)
    assert status == 200
    by_key = {f["key"]: f for f in catalog["fields"]}
    level = by_key["profile_field_level"]
    assert (level["type"], level["custom"], level["options"]) == ("MENU", True, LEVELS)
    assert "in" in level["operators"] and "contains" not in level["operators"]
    assert by_key["department"]["group"] == "Organisation" and not by_key["department"]["custom"]
    assert by_key["lastlogin"]["type"] == "DATETIME" and "within_last" in by_key["lastlogin"]["operators"]
    assert catalog["operators"]["is_empty"]["takes_value"] is False

    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)

    # -- sign in: a forged token is refused, a real one is kept in sessionStorage
    page.goto(base + "/console/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#dev-login")).to_be_hidden()
    expect(page.get_by_role("button", name=re.compile("Dev login"))).to_be_hidden()
    shot(page, "01-sign-in.png")
    forged = make_token("another-secret-of-at-least-32-bytes!!", "eve", site, ["site_admin"])
    page.get_by_label("Admin token (JWT)").fill(forged)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-error")).to_contain_text("INVALID_TOKEN")
    page.get_by_label("Admin token (JWT)").fill(token)
    page.keyboard.press("Tab")
    page.get_by_role("button", name="Sign in").press("Enter")
    expect(page.get_by_role("tab", name="Managed segments")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#whoami")).to_contain_text(site)
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == token
    assert page.evaluate("localStorage.length") == 0 and context.cookies() == []
    expect(page.get_by_role("status")).to_contain_text("Signed in")
    page.evaluate("""() => {  // record every state of the commands list, to see "pending" go by
        const list = document.getElementById('command-list');
        window.__commandStates = [];
        new MutationObserver(() => window.__commandStates.push(list.textContent))
            .observe(list, {childList: true, subtree: true, characterData: true});
    }""")

    # -- managed segments: counts, then enable "Senior staff" through the confirm dialog
    expect(page.locator("tr[data-segment=sales] td.members")).to_have_text("6")
    expect(page.locator("#users-stored")).to_contain_text("12 users")
    switch = page.get_by_role("switch", name="Automation for Senior staff")
    expect(switch).not_to_be_checked()
    switch.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Enable automation for “Senior staff”?")
    dialog.get_by_role("button", name="Enable automation").click()
    expect(page.locator("#command-list li").first).to_contain_text("Enable automation for Senior staff")
    expect(page.locator("#command-list li").first).to_contain_text("accepted")
    expect(switch).to_be_checked()
    shot(page, "02-managed-segments.png")

    # -- rule editor: custom MENU field, "is one of" with option checkboxes, preview, save
    page.get_by_role("tab", name="Managed segments").press("ArrowRight")  # keyboard tab navigation
    expect(page.get_by_role("tab", name="Rule editor")).to_have_attribute("aria-selected", "true")
    page.get_by_label("Name", exact=True).fill("Senior and lead staff")
    expect(page.get_by_label("Rule id")).to_have_value("senior-and-lead-staff")
    page.get_by_label("3. User segment").select_option("seniors")
    leaf = page.locator(".leaf").first
    fields = leaf.get_by_label("1. Profile field")
    custom = fields.locator("optgroup[label='Custom profile fields'] option[value=profile_field_level]")
    expect(custom).to_have_count(1)
    expect(fields.locator("optgroup[label='Standard fields: Organisation'] option[value=department]")) \
        .to_have_count(1)
    fields.select_option("profile_field_level")
    ops = leaf.get_by_label("2. Condition")
    assert set(ops.locator("option").evaluate_all("os => os.map(o => o.value)")) == {
        "", "equals", "not_equals", "in", "not_in", "is_empty", "is_not_empty", "is_defined",
        "is_not_defined"}
    expect(leaf.get_by_label(VALUE)).to_have_js_property("tagName", "SELECT")  # menu options dropdown
    ops.select_option("in")
    leaf.get_by_label("Senior", exact=True).check()
    leaf.get_by_label("Lead", exact=True).check()
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-added")).to_have_text("8")
    expect(page.locator("#preview-removed")).to_have_text("0")
    expect(page.locator("#preview-evaluated")).to_have_text("12")
    expect(page.locator("#preview-sample-added li")).to_have_count(8)
    assert members_of(cluster, site, "seniors") == set()  # a preview changes nothing
    shot(page, "03-rule-editor-preview.png")
    page.get_by_role("button", name="Save changes").click()
    created = page.locator("#command-list li", has_text="Create rule senior-and-lead-staff")
    expect(created).to_contain_text("accepted")
    expect(page.locator("#editor-title")).to_contain_text("Edit rule")
    cluster.wait(lambda: members_of(cluster, site, "seniors") == seniors_v1, what="rule members")

    # -- members tab: paginated list with matched rules; a member's explain tree
    page.get_by_role("tab", name="User segment members").click()
    page.locator("#members-segment").select_option("seniors")
    page.locator("#members-page-size").select_option("5")
    rows = page.locator("#members-table tbody tr")
    expect(rows).to_have_count(5)
    expect(page.locator("#members-summary")).to_have_text("Senior staff: 8 member(s).")
    expect(rows.first).to_contain_text("u01")
    expect(rows.first).to_contain_text("senior-and-lead-staff")
    page.get_by_role("button", name="Next page").click()
    expect(rows).to_have_count(3)
    expect(page.locator("#members-page")).to_have_text("Page 2")
    page.get_by_role("button", name="Previous page").click()
    expect(rows).to_have_count(5)
    page.get_by_role("button", name="Explain u02 in Senior staff").click()
    explain = page.locator("#explain")
    expect(explain).to_contain_text("Why is u02 in “Senior staff”?")
    expect(explain.locator(".leaf-result")) \
        .to_contain_text('profile_field_level is one of ["Senior", "Lead"]')
    expect(explain.locator(".leaf-result")).to_contain_text('"Lead"')
    expect(explain.locator(".leaf-result .res-true")).to_have_count(1)
    shot(page, "05-members-explain.png")

    # -- rules tab: status; edit: text form round trip, add a condition, preview, save
    page.get_by_role("tab", name="View/edit rules").click()
    row = page.locator("tr[data-rule=senior-and-lead-staff]")
    expect(row).to_contain_text("enabled")
    expect(row.locator("code.cond")).to_have_text('profile_field_level in ["Senior", "Lead"]')
    broken = page.locator("tr[data-rule=legacy-team]")
    expect(broken.locator(".badge")).to_have_text("broken")
    expect(broken.locator(".reason")).to_contain_text("profile_field_team")
    row.get_by_role("button", name="Edit rule Senior and lead staff").click()
    expect(page.locator("#editor-title")).to_have_text("Edit rule “Senior and lead staff”")
    expect(page.get_by_label("Rule id")).to_have_js_property("readOnly", True)
    page.get_by_label("Text form", exact=True).check()
    text_form = page.get_by_label("Condition (text form)")
    expect(text_form).to_have_value('profile_field_level in ["Senior", "Lead"]')
    page.get_by_label("Form", exact=True).check()
    expect(page.locator(".leaf").first.get_by_label("2. Condition")).to_have_value("in")
    page.get_by_role("button", name="Add condition").click()
    leaf2 = page.locator(".leaf").nth(1)
    expect(leaf2.get_by_label("1. Profile field")).to_be_focused()
    leaf2.get_by_label("1. Profile field").select_option("department")
    expect(leaf2.get_by_label("2. Condition")).to_have_value("equals")
    leaf2.get_by_label(VALUE).fill("Sales")
    unlabeled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter(e => e.getClientRects().length)
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                     && !(e.tagName === 'BUTTON' && e.textContent.trim()))
        .map(e => e.id || e.outerHTML.slice(0, 80))""")
    assert unlabeled == [], f"controls without an accessible name: {unlabeled}"
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-added")).to_have_text("0")
    expect(page.locator("#preview-removed")).to_have_text("4")
    page.get_by_role("button", name="Save changes").click()
    expect(command(page, "Update rule senior-and-lead-staff")).to_contain_text("accepted")
    cluster.wait(lambda: members_of(cluster, site, "seniors") == seniors_v2, what="edited rule members")
    page.get_by_role("tab", name="View/edit rules").click()
    expect(row.locator("code.cond")).to_have_text(
        'profile_field_level in ["Senior", "Lead"] and department equals "Sales"')
    shot(page, "04-rules.png")
    page.get_by_role("tab", name="User segment members").click()
    page.locator("#members-segment").select_option("seniors")
    expect(rows).to_have_count(4)

    # -- delete: the confirm says what happens to members
    page.get_by_role("tab", name="View/edit rules").click()
    row.get_by_role("button", name="Delete rule Senior and lead staff").click()
    expect(dialog).to_contain_text("only because of this rule will be removed")
    dialog.get_by_role("button", name="Delete rule").click()
    expect(command(page, "Delete rule senior-and-lead-staff")).to_contain_text("accepted")
    expect(row).to_have_count(0)
    cluster.wait(lambda: members_of(cluster, site, "seniors") == set(), what="members removed after delete")

    # -- a rule the API refuses: the error shows at the offending condition
    page.get_by_role("tab", name="Rule editor").click()
    page.get_by_role("button", name="New rule").click()
    one = page.locator(".leaf").first
    one.get_by_label("1. Profile field").select_option("lastlogin")  # datetime: relative by default
    expect(one.get_by_label("2. Condition")).to_have_value("within_last")
    expect(one.get_by_label(re.compile(r"^Duration"))).to_have_value("30")
    expect(one.get_by_label(re.compile(r"^Unit"))).to_have_value("D")
    one.get_by_label("2. Condition").select_option("after")
    expect(one.get_by_label(re.compile(r"^Date"))).to_have_attribute("type", "date")  # date picker
    one.get_by_label("1. Profile field").select_option("interests")
    expect(one.get_by_label("2. Condition")).to_have_value("any_of")
    lines = one.get_by_label(re.compile(r"^Values \(one per line\)"))
    expect(lines).to_have_js_property("tagName", "TEXTAREA")
    one.get_by_label("1. Profile field").select_option("department")
    one.get_by_label(VALUE).fill("Sales")
    page.get_by_role("button", name="Add group").click()  # nested group, negated: all / any / not
    inner = page.locator(".group .group")
    inner.locator(".leaf").get_by_label("1. Profile field").select_option("city")
    inner.locator(".leaf").get_by_label(VALUE).fill("Paris")
    inner.get_by_label(re.compile("^Negate")).check()
    page.get_by_label("Text form", exact=True).check()
    expect(text_form).to_have_value('department equals "Sales" and not city equals "Paris"')
    text_form.fill('department == "Sales" and (city == "Paris" or city == "Lyon")')
    page.get_by_label("Form", exact=True).check()
    expect(page.locator(".group .group select[id$='-op']").first).to_have_value("any")
    expect(page.locator(".leaf")).to_have_count(3)

    page.get_by_role("button", name="New rule").click()
    page.get_by_label("Name", exact=True).fill("Bad pattern")
    page.get_by_label("3. User segment").select_option("seniors")
    page.get_by_role("button", name="Add condition").click()
    first, second = page.locator(".leaf").nth(0), page.locator(".leaf").nth(1)
    first.get_by_label("1. Profile field").select_option("department")
    first.get_by_label(VALUE).fill("Sales")
    second.get_by_label("1. Profile field").select_option("email")
    second.get_by_label("2. Condition").select_option("matches")
    second.get_by_label("Regular expression (RE2)").fill("([a-z")
    page.get_by_role("button", name="Save changes").click()
    expect(second.locator(".node-error")).to_contain_text("INVALID_VALUE")
    expect(second.locator(".node-error")).to_contain_text("a '[' is not closed by ']'")
    expect(second.locator(".node-error")).not_to_contain_text("b'")
    expect(second).to_have_class(re.compile(r"\binvalid\b"))
    expect(second.get_by_label("Regular expression (RE2)")).to_have_attribute("aria-invalid", "true")
    expect(first.locator(".node-error")).to_be_hidden()
    expect(page.get_by_role("status")).to_contain_text("not saved")
    assert page.locator("#command-list li", has_text="Create rule bad-pattern").count() == 0
    shot(page, "06-rule-error.png")

    # -- a command the processor rejects: another admin disables the segment while the save is in flight
    second.get_by_label("Regular expression (RE2)").fill("@example\\.com$")
    expect(second.locator(".node-error")).to_be_hidden()

    def hold_create(route: Any) -> None:
        if route.request.method == "POST" and "dry_run" not in route.request.url:
            code, body, _ = http("POST", f"{base}/sites/{site}/segments/seniors/automation", token,
                                 {"enabled": False})
            assert code == 202, body
            deadline = time.monotonic() + 30
            while (http("GET", base + body["poll"], token)[1]["status"] == "PENDING"
                   and time.monotonic() < deadline):
                time.sleep(0.05)
        route.continue_()

    page.route(f"**/sites/{site}/rules*", hold_create)
    page.get_by_role("button", name="Save changes").click()
    rejected = page.locator("#command-list li", has_text="Create rule bad-pattern")
    expect(rejected).to_contain_text("rejected")
    expect(rejected).to_contain_text("SEGMENT_NOT_MANAGED")
    expect(page.locator("#form-errors")).to_contain_text("automation is off for segment 'seniors'")
    expect(page.locator("#form-errors")).to_contain_text("Managed segments")  # the control to use
    expect(page.locator("#form-errors")).not_to_contain_text("EnableSegmentAutomation")
    page.unroute(f"**/sites/{site}/rules*")

    # -- disable Sales and remove its members (the dialog offers it)
    page.get_by_role("tab", name="Managed segments").click()
    page.get_by_role("switch", name="Automation for Sales").click()
    expect(dialog).to_contain_text("Disable automation for “Sales”?")
    dialog.get_by_label("Also remove the 6 member(s) automation added").check()
    shot(page, "07-disable-dialog.png")
    dialog.get_by_role("button", name="Disable automation").click()
    expect(page.locator("#command-list li", has_text="Disable automation for Sales and remove members")) \
        .to_contain_text("accepted")
    cluster.wait(lambda: members_of(cluster, site, "sales") == set(), what="Sales members removed")
    expect(page.locator("tr[data-segment=sales] td.members")).to_have_text("0", timeout=20_000)
    expect(page.get_by_role("switch", name="Automation for Sales")).not_to_be_checked()

    command_states = page.evaluate("window.__commandStates")

    # -- sign out forgets the token
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None
    context.close()

    local = base + "/"
    outside = [u for u in requests if not (u.startswith(local) or u.startswith("data:"))]
    assert not outside, f"requests left {local}: {outside}"
    assert any("dry_run=true" in u for u in requests)
    assert any("pending…" in state for state in command_states), "a command was shown as pending"
    assert not problems, problems


def test_dev_login_only_when_enabled(tmp_path: Path, browser: Any) -> None:
    """A worker started with CONSOLE_DEV_LOGIN=1 (what `make run` does) offers a clearly marked
    dev login whose token works on the API; the session worker (flag unset) answers 404."""
    from playwright.sync_api import expect

    c = Cluster(tmp_path / "dev", partitions=2, app_id="sa-console-dev")
    try:
        w = WorkerProcess(c.settings, "dev", c.work_dir, extra_env={"CONSOLE_DEV_LOGIN": "1"}).start()
        c.workers.append(w)
        site = f"dev-{uuid.uuid4().hex[:6]}"
        cmd = make_command(site, "UpsertSegment", segment_id="sales", name="Sales")
        c.producer.command(cmd)
        c.producer.flush()
        c.wait_results([cmd.command_id], timeout=90)
        status, body, _ = http("GET", f"{w.url}/console/dev-token?site={site}")
        assert status == 200 and body["site_id"] == site
        assert http("GET", f"{w.url}/sites/{site}/segments", body["token"])[0] == 200

        context = browser.new_context()
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(w.url + "/console/")
        box = page.locator("#dev-login")
        expect(box).to_be_visible()
        expect(box).to_contain_text("DEVELOPMENT ONLY")
        shot(page, "08-dev-login.png")
        page.get_by_label("Site", exact=True).fill(site)
        page.get_by_role("button", name="Dev login (make run only)").click()
        expect(page.locator("#whoami")).to_contain_text(site, timeout=15_000)
        expect(page.locator("tr[data-segment=sales]")).to_contain_text("Sales")
        assert all(u.startswith(w.url + "/") or u.startswith("data:") for u in requests), requests
        context.close()
    finally:
        c.close()


def test_console_first_hour(cluster: Cluster, console_site: str, browser: Any) -> None:
    """What a new admin meets in the first hour (issue 22), each checked in Chromium."""
    from playwright.sync_api import expect

    site = console_site
    base = cluster.workers[0].url
    token = make_token(TEST_JWT_SECRET, "alice", site, ["site_admin"])
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)
    writes: list[str] = []  # rule writes that reached the server (not dry runs, previews or reads)
    page.on("request", lambda r: writes.append(r.method + " " + r.url)
            if r.method in ("POST", "PUT") and "/rules" in r.url and "dry_run" not in r.url
            and "preview" not in r.url else None)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    page.goto(base + "/console/")
    page.get_by_label("Admin token (JWT)").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#whoami")).to_contain_text(site)

    # -- a deleted user is not counted as stored
    expect(page.locator("#users-stored")).to_contain_text("12 users stored")

    # -- the members tab opens on a segment with members, not on the first (empty) one
    page.get_by_role("tab", name="User segment members").click()
    expect(page.locator("#members-segment")).to_have_value("sales")
    expect(page.locator("#members-summary")).to_have_text("Sales: 6 member(s).")

    # -- why is a user NOT in the segment: any user id, member or not
    page.get_by_label("Why is a user in this segment, or not?").fill("u07")
    page.get_by_role("button", name="Explain", exact=True).click()
    explain = page.locator("#explain")
    expect(explain).to_contain_text("Why is u07 not in “Sales”?")
    expect(explain.locator(".leaf-result")).to_contain_text('department equals "Sales"')
    expect(explain.locator(".leaf-result")).to_contain_text('"HR"')
    expect(explain.locator(".leaf-result .res-false")).to_have_count(1)
    shot(page, "09-explain-any-user.png")
    page.get_by_label("Why is a user in this segment, or not?").fill("gone")
    page.get_by_role("button", name="Explain", exact=True).click()
    expect(explain).to_contain_text("Why is gone not in “Sales”?")
    expect(explain).to_contain_text("deleted")
    page.get_by_label("Why is a user in this segment, or not?").fill("nobody-here")
    page.get_by_role("button", name="Explain", exact=True).click()
    expect(explain).to_contain_text("No stored user “nobody-here”")

    # -- a banner belongs to its tab: switching tabs clears it
    page.get_by_label("Why is a user in this segment, or not?").fill("")
    page.get_by_role("button", name="Explain", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Enter a user id")
    page.get_by_role("tab", name="Rule editor").click()
    expect(page.locator("#status")).to_have_text("")  # (hidden while empty)

    # -- the steps read 1, 2, 3 in page order
    labels = page.evaluate("""() => [...document.querySelectorAll('#panel-editor label')]
        .map(l => l.textContent.trim()).filter(t => /^[123]\\. /.test(t))""")
    steps = [t[:2] for t in labels]
    assert steps == sorted(steps) and steps[0] == "1." and steps[-1] == "3.", labels

    # -- ids are checked as typed; nothing is sent with a bad one
    page.get_by_label("Name", exact=True).fill("Sales dept")
    page.get_by_label("Rule id").fill("sales dept!")
    rule_id_error = page.locator("#rule-id-error")
    expect(rule_id_error).to_contain_text("a space at position 6 is not allowed")
    expect(page.get_by_label("Rule id")).to_have_attribute("aria-invalid", "true")
    leaf = page.locator(".leaf").first
    leaf.get_by_label("1. Profile field").select_option("department")
    leaf.get_by_label(VALUE).fill("Sales")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_contain_text("not saved")
    expect(rule_id_error).to_be_visible()
    page.get_by_label("Rule id").fill("sales-dept-2")
    expect(rule_id_error).to_be_hidden()

    # -- an over-long name is said at the field, never cut; the generated id is clean
    page.get_by_role("button", name="New rule").click()
    long_name = "Sales and marketing team members " * 9 + "x" * 10  # 307 characters
    page.get_by_label("Name", exact=True).fill(long_name)
    assert page.get_by_label("Name", exact=True).input_value() == long_name  # not silently cut
    expect(page.locator("#rule-name-error")).to_contain_text(f"{len(long_name)} characters long; at most 255")
    generated = page.get_by_label("Rule id").input_value()
    assert 0 < len(generated) <= 60 and not generated.endswith("-") and " " not in generated, generated
    assert long_name.lower().replace(" ", "-").startswith(generated), generated
    expect(page.locator("#rule-id-help")).to_contain_text("shortened")

    # -- department equals "" is refused with "is empty" as the way
    leaf = page.locator(".leaf").first
    leaf.get_by_label("1. Profile field").select_option("department")
    expect(leaf.get_by_label("2. Condition")).to_have_value("equals")
    page.get_by_role("button", name="Save changes").click()
    expect(leaf.locator(".node-error")).to_contain_text("choose the condition “is empty”")
    expect(leaf.get_by_label(VALUE)).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#rule-name-error")).to_be_visible()  # every problem shows at once
    shot(page, "10-rule-editor-checks.png")
    page.get_by_label("Name", exact=True).fill("Sales")
    expect(page.locator("#rule-name-error")).to_be_hidden()

    # -- changing the operator keeps the value where it fits
    leaf.get_by_label(VALUE).fill("Sales")
    leaf.get_by_label("2. Condition").select_option("in")
    expect(leaf.get_by_label(re.compile(r"^Values \(one per line\)"))).to_have_value("Sales")
    leaf.get_by_label("2. Condition").select_option("is_empty")
    leaf.get_by_label("2. Condition").select_option("equals")
    expect(leaf.get_by_label(VALUE)).to_have_value("Sales")
    leaf.get_by_label("1. Profile field").select_option("profile_field_level")
    leaf.get_by_label(VALUE).select_option("Senior")
    leaf.get_by_label("2. Condition").select_option("in")
    expect(leaf.get_by_label("Senior", exact=True)).to_be_checked()
    expect(leaf.get_by_label("Lead", exact=True)).not_to_be_checked()

    # -- a negative duration keeps the number input, with the error next to it
    leaf.get_by_label("1. Profile field").select_option("lastlogin")
    expect(leaf.get_by_label("2. Condition")).to_have_value("within_last")
    duration = leaf.get_by_label(re.compile(r"^Duration"))
    duration.fill("-5")
    page.get_by_role("button", name="Preview").click()
    expect(leaf.locator(".node-error")).to_contain_text("whole number of at least 1")
    expect(leaf.get_by_label(re.compile(r"^Duration"))).to_have_attribute("type", "number")
    expect(leaf.get_by_label(re.compile(r"^Duration"))).to_have_value("-5")
    expect(leaf.get_by_label(re.compile(r"^Duration"))).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("Value (JSON)")).to_have_count(0)
    leaf.get_by_label(re.compile(r"^Duration")).fill("30")
    leaf.get_by_label("1. Profile field").select_option("department")
    leaf.get_by_label("2. Condition").select_option("equals")
    leaf.get_by_label(VALUE).fill("Sales")

    # -- an unmanaged segment says so, previews honestly, and offers to turn automation on
    page.get_by_label("3. User segment").select_option("archive")
    note = page.locator("#rule-segment-note")
    expect(note).to_contain_text("Automation is off for “Archive”")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-unmanaged")).to_contain_text("Not managed: nothing would change")
    expect(page.locator("#preview-added")).to_have_text("6")  # what turning it on would do
    shot(page, "11-unmanaged-segment-preview.png")
    note.get_by_role("button", name="Turn on automation for Archive").click()
    page.get_by_role("dialog").get_by_role("button", name="Enable automation").click()
    expect(page.locator("#command-list li", has_text="Enable automation for Archive")).to_contain_text("accepted")
    expect(note).to_be_hidden()

    # -- after a save the preview no longer says nothing has changed
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-unmanaged")).to_have_count(0)
    expect(page.locator("#preview-note")).to_contain_text("Nothing has changed yet")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#command-list li", has_text="Create rule sales")).to_contain_text("accepted")
    expect(page.locator("#preview-note")).not_to_contain_text("Nothing has changed yet")
    expect(page.locator("#preview-note")).to_contain_text("Saved at")
    assert [w for w in writes if w.startswith("POST")] and all("/rules" in w for w in writes), writes
    assert len([w for w in writes if w.startswith("POST")]) == 1, writes  # only the valid rule was sent
    cluster.wait(lambda: members_of(cluster, site, "archive") == {f"u{i:02d}" for i in range(6)},
                 what="archive members")

    # -- a reload keeps the Commands panel and the members tab's last segment
    page.get_by_role("tab", name="User segment members").click()
    page.locator("#members-segment").select_option("archive")
    expect(page.locator("#members-summary")).to_contain_text("Archive:")
    page.reload()
    expect(page.locator("#whoami")).to_contain_text(site)
    expect(page.locator("#command-list li", has_text="Create rule sales")).to_contain_text("accepted")
    expect(page.locator("#command-list li", has_text="Enable automation for Archive")).to_contain_text("accepted")
    page.get_by_role("tab", name="User segment members").click()
    expect(page.locator("#members-segment")).to_have_value("archive")
    context.close()
    assert not problems, problems
