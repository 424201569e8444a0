"""The console's Catalog tab and large-change dialog in Debian's Chromium against a real worker.

An admin lowers the site's guard to 40 people in the Catalog tab, then deletes a rule that would
take 45 of Sales's 60 members out: the dialog shows the counts and the people by name; refused,
nothing is produced (a later command is decided and the members are all there); confirmed, the
rule is deleted and 45 members leave. The tab also creates, renames and deletes a segment,
declares a menu field, and imports a CSV file whose bad lines are reported by line. Screenshots
go to docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from processor.api.auth import make_token
from tests.integration.test_console import browser, http, members_of, shot  # noqa: F401 - browser: the fixture
from tests.support.harness import TEST_JWT_SECRET, Cluster, make_command, make_event


def _seed(cluster: Cluster, site: str) -> None:
    cmds = [make_command(site, "UpsertSegment", segment_id="sales", name="Sales"),
            make_command(site, "EnableSegmentAutomation", segment_id="sales"),
            make_command(site, "CreateRule", rule_id="dept", segment_id="sales", name="Sales department",
                         condition={"field": "department", "op": "equals", "value": "Sales"}, enabled=True),
            make_command(site, "CreateRule", rule_id="lead", segment_id="sales", name="Leads",
                         condition={"field": "institution", "op": "equals", "value": "Lead"}, enabled=True)]
    for c in cmds:
        cluster.producer.command(c)
    for i in range(60):  # u00-u44 only through "dept"; u45-u59 also Leads
        cluster.producer.user_event(make_event(site, f"u{i:02d}", firstname=f"First{i}", lastname="Lee",
                                               email=f"u{i}@example.org", department="Sales",
                                               institution="Lead" if i >= 45 else "Staff"))
    cluster.producer.flush()
    assert all(r.status == "ACCEPTED" for r in cluster.wait_results([c.command_id for c in cmds]).values())
    cluster.wait(lambda: len(members_of(cluster, site, "sales")) == 60, what="60 Sales members")


def test_catalog_tab_and_large_change_dialog(cluster: Cluster, site: str, browser: Any,  # noqa: F811
                                             tmp_path: Path) -> None:
    from playwright.sync_api import expect

    _seed(cluster, site)
    base = cluster.workers[0].url
    token = make_token(TEST_JWT_SECRET, "alice", site, ["site_admin"])
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)
    problems: list[str] = []
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    page.goto(base + "/console/")
    page.get_by_label("Admin token (JWT)").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("tab", name="Managed segments")).to_have_attribute("aria-selected", "true")

    # -- Catalog: the guard's threshold, a segment created and renamed, a menu field
    page.get_by_role("tab", name="Catalog").click()
    expect(page.get_by_label("At least (people)")).to_have_value("50")
    expect(page.get_by_label("More than (% of members)")).to_have_value("10")
    page.get_by_label("At least (people)").fill("40")
    page.get_by_role("button", name="Save guard").click()
    expect(page.locator("#command-list li", has_text="Large-change guard: 40 people")).to_contain_text("accepted")
    assert http("GET", f"{base}/sites/{site}/settings", token)[1]["large_change_min_removed"] == 40

    page.get_by_label("Segment id").fill("bad id")
    page.get_by_role("button", name="Create segment").click()
    expect(page.locator("#new-segment-error")).to_contain_text("space")
    page.get_by_label("Segment id").fill("archive")
    page.get_by_label("Segment name").fill("Archive")
    page.get_by_role("button", name="Create segment").click()
    expect(page.locator("#command-list li", has_text="Create segment archive")).to_contain_text("accepted")
    row = page.locator("#catalog-segments tr[data-catalog-segment=archive]")
    expect(row).to_contain_text("Archive")
    row.get_by_role("button", name="Rename segment Archive").click()
    page.get_by_label("New name for Archive").fill("Old archive")
    row.get_by_role("button", name="Save name").click()
    expect(page.locator("#command-list li", has_text="Rename segment archive")).to_contain_text("accepted")
    expect(row).to_contain_text("Old archive")

    page.get_by_label("Short name").fill("level")
    page.get_by_label("Field name").fill("Level")
    page.get_by_label("Type", exact=True).select_option("MENU")
    page.get_by_role("button", name="Save field").click()
    expect(page.locator("#field-error")).to_contain_text("at least one option")
    page.get_by_label("Menu options (one per line)").fill("Junior\nSenior\n")
    page.get_by_role("button", name="Save field").click()
    expect(page.locator("#command-list li", has_text="Save field level")).to_contain_text("accepted")
    expect(page.locator("#catalog-fields tr[data-field=level]")).to_contain_text("Junior, Senior")

    csv = tmp_path / "segments.csv"
    csv.write_text("id,name,managed\nhr,Human Resources,no\nbad id,Bad,\nops,Ops,perhaps\nit,IT,yes\n")
    page.get_by_label("Import segments from a CSV file").set_input_files(str(csv))
    page.get_by_role("button", name="Import", exact=True).click()
    results = page.locator("#bulk-results")
    expect(results.locator("tr[data-line='2']")).to_contain_text("created")
    expect(results.locator("tr[data-line='3']")).to_contain_text("INVALID_ID")
    expect(results.locator("tr[data-line='4']")).to_contain_text("ops")
    expect(results.locator("tr[data-line='4']")).to_contain_text("managed must be true or false")
    expect(results.locator("tr[data-line='5']")).to_contain_text("created")
    expect(results.locator("caption")).to_contain_text("4 line(s), 2 failed")
    expect(page.locator("#catalog-segments tr[data-catalog-segment=it]")).to_contain_text("IT")
    shot(page, "catalog.png")

    # -- a large change, refused: nothing is produced
    page.get_by_role("tab", name="View/edit rules").click()
    page.locator("tr[data-rule=dept]").get_by_role("button", name="Delete rule Sales department").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Delete rule").click()
    expect(dialog).to_contain_text("This change removes 45 people")
    impact = dialog.locator("#large-change")
    expect(impact.locator("td.impact-members")).to_have_text("60")
    expect(impact.locator("td.impact-removed")).to_have_text("45")
    expect(impact.locator("td.impact-added")).to_have_text("0")
    people = impact.locator("#large-sample-removed li")
    expect(people).to_have_count(20)
    expect(people.first).to_have_text("u00 (First0 Lee, u0@example.org)")
    expect(impact).to_contain_text("first 20 of 45")
    shot(page, "large-change-dialog.png")
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("status")).to_contain_text("not applied")
    assert page.locator("#command-list li", has_text="Delete rule dept").count() == 0
    status, body, _ = http("PUT", f"{base}/sites/{site}/segments/marker", token, {"name": "Marker"})
    assert status == 202, body
    deadline = time.monotonic() + 30
    while http("GET", base + body["poll"], token)[1]["status"] == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "dept" in {r["rule_id"] for r in http("GET", f"{base}/sites/{site}/rules", token)[1]["rules"]}
    cluster.catch_up()
    assert len(members_of(cluster, site, "sales")) == 60

    # -- the same change, confirmed
    page.locator("tr[data-rule=dept]").get_by_role("button", name="Delete rule Sales department").click()
    dialog.get_by_role("button", name="Delete rule").click()
    dialog.get_by_role("button", name="Remove 45 people").click()
    expect(page.locator("#command-list li", has_text="Delete rule dept")).to_contain_text("accepted")
    cluster.wait(lambda: members_of(cluster, site, "sales") == {f"u{i:02d}" for i in range(45, 60)},
                 what="45 members removed")

    # -- a segment without members is deleted after the plain confirmation
    page.get_by_role("tab", name="Catalog").click()
    page.locator("#catalog-segments tr[data-catalog-segment=archive]").get_by_role(
        "button", name="Delete segment Old archive").click()
    dialog.get_by_role("button", name="Delete segment").click()
    expect(page.locator("#command-list li", has_text="Delete segment archive")).to_contain_text("accepted")
    expect(page.locator("#catalog-segments tr[data-catalog-segment=archive]")).to_have_count(0)

    assert all(u.startswith(base + "/") or u.startswith("data:") for u in requests), requests
    assert not problems, problems
    context.close()
