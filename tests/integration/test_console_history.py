"""The console's History and Audit views (issue 21 part 4): Playwright driving Debian's Chromium
against the session's real worker.

Alice creates a rule that puts Bob and Carol in Sales; then Bob moves to HR and leaves. In the
History tab, Bob's history shows both changes newest first: the removal caused by his profile
update, the addition caused by alice's command with the department recorded with it. The
segment's history draws its size over time (1 member now) and lists the three changes. The
Audit tab lists alice's commands with what each asked for and its impact (+2 for the rule).
Screenshots go to docs/screenshots/ (README). Without /usr/bin/chromium these tests skip.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from processor.api.auth import make_token
from processor.contract.models import Actor
from tests.support.harness import TEST_JWT_SECRET, Cluster, make_command, make_event

from .test_console import browser, shot  # noqa: F401 - the module-scoped Chromium fixture
from .test_api import call


def test_history_and_audit_views(cluster: Cluster, site: str, browser: Any) -> None:  # noqa: F811
    from playwright.sync_api import expect

    def by_alice(c: Any) -> Any:
        return replace(c, actor=Actor("alice", ("site_admin",)))

    setup = [by_alice(make_command(site, "UpsertSegment", segment_id="sales", name="Sales")),
             by_alice(make_command(site, "EnableSegmentAutomation", segment_id="sales"))]
    for c in setup:
        cluster.producer.command(c)
    for user, dept in (("bob", "Sales"), ("carol", "Sales"), ("dave", "HR")):
        cluster.producer.user_event(make_event(site, user, department=dept))
    cluster.producer.flush()
    cluster.wait_results([c.command_id for c in setup])
    tok = make_token(TEST_JWT_SECRET, "alice", site, ["site_admin"])
    base = cluster.workers[0].url
    cluster.wait(lambda: call(base, "GET", f"/sites/{site}/segments", tok)[1].get("users") == 3, what="users stored")
    rule = by_alice(make_command(site, "CreateRule", rule_id="sales-dept", segment_id="sales", name="Sales dept",
                                 condition={"field": "department", "op": "equals", "value": "Sales"}))
    cluster.producer.command(rule)
    cluster.producer.flush()
    cluster.wait(lambda: len(cluster.changes_for(site)) == 2, what="bob and carol added")
    cluster.producer.user_event(make_event(site, "bob", "USER_UPDATED", department="HR"))
    cluster.producer.flush()
    cluster.wait(lambda: len(cluster.changes_for(site)) == 3, what="bob removed")
    cluster.wait(lambda: len(call(base, "GET", f"/sites/{site}/segments/sales/history", tok)[1]["changes"]) == 3,
                 what="the worker's history index has the three changes")

    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)
    problems: list[str] = []
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.goto(base + "/console/")
    page.get_by_label("Admin token (JWT)").fill(tok)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("tab", name="Managed segments")).to_have_attribute("aria-selected", "true")

    # -- a user's history: newest first, the cause and who issued it, the values recorded
    page.get_by_role("tab", name="History").click()
    expect(page.locator("#panel-history")).to_be_visible()
    expect(page.locator("#panel-segments")).to_be_hidden()
    panel = page.get_by_role("tabpanel", name="History")
    panel.get_by_label("User", exact=True).fill("bob")
    page.get_by_role("button", name="Show user history").click()
    expect(page.locator("#history-title")).to_have_text("History of bob")
    rows = page.locator("#history-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("REMOVED")
    expect(rows.nth(0)).to_contain_text("USER_UPDATED")
    expect(rows.nth(0)).to_contain_text('department = "HR"')
    expect(rows.nth(1)).to_contain_text("ADDED")
    expect(rows.nth(1)).to_contain_text("RULE_CREATED by alice")
    expect(rows.nth(1)).to_contain_text(rule.command_id)
    expect(rows.nth(1)).to_contain_text("sales-dept")
    expect(rows.nth(1)).to_contain_text('department = "Sales"')
    shot(page, "history-user.png")

    # -- a segment's history: its size over time and its changes; a user links to their history
    panel.get_by_label("Segment", exact=True).select_option("sales")
    page.get_by_role("button", name="Show segment history").click()
    expect(page.locator("#history-title")).to_have_text("History of Sales")
    chart = page.get_by_role("img", name=re.compile("Size of Sales by day"))
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute("data-last-size", "1")
    expect(page.locator("#history-chart")).to_contain_text("Now 1 member(s); +2 added, −1 removed")
    expect(rows).to_have_count(3)
    expect(rows.nth(0).get_by_role("button", name="bob")).to_be_visible()
    shot(page, "history-segment.png")
    rows.nth(1).get_by_role("button").first.click()  # carol (or bob): their own history
    expect(page.locator("#history-title")).to_have_text(re.compile(r"History of (carol|bob)"))

    # -- the audit tab: every command, who, what, the result, the impact
    page.get_by_role("tab", name="Audit").click()
    audit = page.locator("#audit-table tbody tr")
    expect(audit).to_have_count(3)
    first = page.locator(f'#audit-table tr[data-command-id="{rule.command_id}"]')
    expect(first).to_contain_text("alice")
    expect(first).to_contain_text('create rule sales-dept in sales: department equals "Sales"')
    expect(first).to_contain_text("ACCEPTED")
    expect(first.locator("td.added")).to_have_text("+2")
    expect(first.locator("td.removed")).to_have_text("−0")
    expect(audit.nth(0)).to_contain_text("create rule")  # newest first
    expect(audit.nth(2)).to_contain_text('segment sales named "Sales"')
    shot(page, "audit.png")

    assert problems == [], problems
    assert all(u.startswith(base) for u in requests), [u for u in requests if not u.startswith(base)]
    context.close()
