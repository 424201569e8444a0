"""The console's people view in Chromium (Playwright, Debian's Chromium; issue 21 part 1): members
with names and e-mail addresses, the search box, "Export CSV", and names in explain and in a
preview's samples, against the session's real worker.

Expected members, names and search results come from the users this test produced. The exported
file is the one the browser downloaded. Screenshot: docs/screenshots/12-members-search.png.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest

from processor.api.auth import make_token
from tests.support.harness import TEST_JWT_SECRET, Cluster, fold_membership, make_command, make_event

from .test_console import browser, shot  # noqa: F401 - the module's Chromium fixture

PEOPLE = {  # user id -> (first name, last name, e-mail, department)
    "u01": ("Ada", "Lovelace", "ada@example.org", "Sales"),
    "u02": ("Alan", "Turing", "alan.turing@example.org", "Sales"),
    "u03": ("Grace", "Hopper", "grace@navy.example", "Sales"),
    "u04": ('=HYPERLINK("http://evil.example","x")', "Mallory", "@evil.example", "Sales"),
    "u05": ("Émile", "Borel", "emile@example.fr", "Sales"),
    "u06": ("Barbara", "Liskov", "barbara@example.org", "HR"),
    **{f"u{i:02d}": (f"Person{i}", "Smith", f"p{i}@example.org", "Sales") for i in range(7, 30)},
}
SALES = sorted(u for u, p in PEOPLE.items() if p[3] == "Sales")


@pytest.fixture
def people_site(cluster: Cluster, site: str) -> str:
    cmds = [make_command(site, "UpsertSegment", segment_id="sales", name="Sales"),
            make_command(site, "UpsertSegment", segment_id="hr", name="HR"),
            make_command(site, "EnableSegmentAutomation", segment_id="sales"),
            make_command(site, "CreateRule", rule_id="sales-dept", segment_id="sales", name="Sales department",
                         condition={"field": "department", "op": "equals", "value": "Sales"}, enabled=True)]
    for c in cmds:
        cluster.producer.command(c)
    for uid, (first, last, mail, dept) in PEOPLE.items():
        cluster.producer.user_event(make_event(site, uid, firstname=first, lastname=last, email=mail,
                                               department=dept))
    cluster.producer.flush()
    results = cluster.wait_results([c.command_id for c in cmds])
    assert all(r.status == "ACCEPTED" for r in results.values()), results
    cluster.wait(lambda: fold_membership(cluster.changes_for(site)).get((site, "sales")) == set(SALES),
                 what="Sales members")
    return site


def test_members_search_and_export(cluster: Cluster, people_site: str, browser: Any) -> None:  # noqa: F811
    from playwright.sync_api import expect

    site = people_site
    token = make_token(TEST_JWT_SECRET, "alice", site, ["site_admin"])
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    expect.set_options(timeout=15_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(cluster.workers[0].url + "/console/")
    page.get_by_label("Admin token (JWT)").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("status")).to_contain_text("Signed in")  # signing in ends on the first tab

    # -- the members tab lists people: id, name and e-mail
    page.get_by_role("tab", name="User segment members").click()
    page.locator("#members-segment").select_option("sales")
    page.locator("#members-page-size").select_option("50")
    rows = page.locator("#members-table tbody tr")
    expect(rows).to_have_count(len(SALES))
    expect(page.locator("#members-summary")).to_have_text(f"Sales: {len(SALES)} member(s).")
    ada = page.locator("tr[data-user=u01]")
    expect(ada.locator("td.name")).to_have_text("Ada Lovelace")
    expect(ada.locator("td.email")).to_have_text("ada@example.org")
    expect(page.locator("tr[data-user=u04] td.name")).to_have_text('=HYPERLINK("http://evil.example","x") Mallory')

    # -- the search box: a prefix of the first, last or full name, the e-mail or the id
    box = page.get_by_label("Search members")
    for term, want in (("lov", ["u01"]), ("GRA", ["u03"]), ("ada lov", ["u01"]), ("alan.t", ["u02"]),
                       ("émile", ["u05"]), ("u0", [u for u in SALES if u.startswith("u0")]),
                       ("smith", [u for u in SALES if PEOPLE[u][1] == "Smith"])):
        box.fill(term)  # typing searches after a short pause
        # the summary names the term once its answer is shown (rows and summary are drawn together)
        expect(page.locator("#members-summary")).to_contain_text(f"Members that match “{term}”")
        assert rows.evaluate_all("rs => rs.map(r => r.dataset.user)") == want, term
    box.fill("barbara")  # in HR, not in Sales
    page.get_by_role("button", name="Search", exact=True).click()
    expect(rows.first).to_contain_text("No member matches “barbara”.")
    expect(rows).to_have_count(1)
    box.fill("lovelace")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#members-summary")).to_contain_text("Members that match “lovelace”: 1 on this page.")
    expect(rows).to_have_count(1)
    expect(ada).to_be_visible()
    shot(page, "12-members-search.png")
    page.get_by_role("button", name="Clear").click()
    expect(rows).to_have_count(len(SALES))
    expect(box).to_have_value("")

    # -- explain names the person
    page.get_by_role("button", name="Explain u01 in Sales").click()
    expect(page.locator("#explain-person")).to_have_text("Ada Lovelace · ada@example.org")

    # -- Export CSV: the whole list, downloaded by the browser
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export CSV").click()
    download = dl.value
    assert download.suggested_filename == f"{site}-sales-members.csv"
    raw = open(download.path(), "rb").read()
    assert raw.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert table[0] == ["user_id", "name", "email", "member_since_utc", "matched_rule_ids"]
    assert [r[0] for r in table[1:]] == SALES
    by_id = {r[0]: r for r in table[1:]}
    assert by_id["u01"][1:3] == ["Ada Lovelace", "ada@example.org"]
    assert by_id["u05"][1] == "Émile Borel"
    assert by_id["u04"][1:3] == ['\'=HYPERLINK("http://evil.example","x") Mallory', "'@evil.example"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", by_id["u01"][3]) and by_id["u01"][4] == "sales-dept"
    expect(page.get_by_role("status")).to_contain_text(f"Exported the members of “sales” to {site}-sales-members.csv")

    # -- a preview's samples name the people too
    page.get_by_role("tab", name="Rule editor").click()
    page.get_by_label("Text form", exact=True).check()
    page.get_by_label("Condition (text form)").fill('department == "HR"')
    page.get_by_label("3. User segment").select_option("hr")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-sample-added li")).to_have_count(1)
    expect(page.locator("#preview-sample-added li")).to_have_text("u06 Barbara Liskov · barbara@example.org")
    assert problems == []
    context.close()
