"""An instructor in a real browser against the real service, next to a student: the demo student
hands in the short notebook (the reference solution cut after the pooling exercise, 36 of 100
points); the instructor logs in with the one-time password the service printed, has to choose a
new one, reads the class table and its charts, filters it, downloads the gradebook CSV through
the page's link, regrades the submission and watches the queue.

The service is one of this module's own (``own_service``): the student-flow test counts the
demo student's submissions on the shared one."""

from __future__ import annotations

import csv
import io
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import LiveService
from tests.browser.test_student_flow import FIRST_SIX, short_notebook

pytestmark = [pytest.mark.browser, pytest.mark.sandbox]

EXERCISE = "chap06_cnn"
ITEMS = [*FIRST_SIX, "conv_layer", "pooling_layer", "dense_layer", "model", "accuracy"]
NEW_PASSWORD = "a new passphrase for the course"
#: The instructor's window: a smaller laptop than the student's, where the wide table must fit.
STAFF_VIEWPORT = {"width": 1280, "height": 800}
PENDING_OR_DONE = re.compile(r"^(採点待ち|採点中|採点済み)$")


def submit_as_student(page: Page, service: LiveService, notebook: Path) -> int:
    """Log in with the demo token, upload ``notebook``, wait for its score; its id."""
    page.goto(f"{service.url}/login")
    page.fill("#token", service.token)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("ノートブックの提出")
    page.wait_for_load_state("load")  # app.js wires the file input on DOMContentLoaded
    page.select_option("#exercise", "chap06_cnn")  # the course has several
    page.set_input_files("#notebook", notebook)
    page.click("form.upload button[type=submit]")
    expect(page).to_have_url(re.compile(r"/submissions/\d+$"))
    expect(page.locator(".summary .big")).to_have_text("36", timeout=90_000)
    return int(page.url.rsplit("/", 1)[1])


def table_rows(page: Page):
    return page.locator("table.class-table tbody tr")


def apply_filters(page: Page, show: str = "all", below: str = "") -> None:
    """Choose the filters with the form's own controls and submit it."""
    form = page.locator("form.filters")
    form.locator("#show").select_option(show)
    form.locator("#below").fill(below)
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(rf"\?show={show}&below={below}&q=(#students)?$"))


@pytest.mark.timeout(180)
def test_an_instructor_reads_filters_exports_and_regrades(
        own_service: LiveService, page: Page, new_page, screenshots: Path, tmp_path: Path):
    started = time.monotonic()
    url = own_service.url

    # The student hands in a notebook and it is graded.
    submission_id = submit_as_student(page, own_service, short_notebook(tmp_path))
    page.screenshot(path=screenshots / "i01-student-graded.png")

    # The instructor, in a browser context of their own, is sent to the login page.
    staff = new_page(viewport=STAFF_VIEWPORT)
    staff.goto(f"{url}/dashboard/{EXERCISE}")
    expect(staff).to_have_url(re.compile(r"/dashboard/login"))
    expect(staff.locator("h1")).to_have_text("教員ログイン")
    staff.fill("#username", "admin")
    staff.fill("#password", own_service.admin_password)
    staff.screenshot(path=screenshots / "i02-login.png")
    staff.click("main form button[type=submit]")

    # The one-time password has to be replaced before anything else opens.
    expect(staff).to_have_url(re.compile(r"/dashboard/password$"))
    expect(staff.locator("h1")).to_have_text("パスワードの変更")
    expect(staff.locator(".alert-warn")).to_be_visible()
    expect(staff.locator("header nav")).to_have_count(0)
    staff.screenshot(path=screenshots / "i03-forced-password.png")
    staff.goto(f"{url}/dashboard/{EXERCISE}")
    expect(staff).to_have_url(re.compile(r"/dashboard/password$"))
    staff.fill("#current", own_service.admin_password)
    staff.fill("#new", NEW_PASSWORD)
    staff.fill("#repeat", NEW_PASSWORD)
    staff.click("main form button[type=submit]")
    expect(staff).to_have_url(re.compile(r"/dashboard/$"))
    expect(staff.locator(".flash")).to_have_count(1)
    expect(staff.locator("header nav")).to_be_visible()
    staff.screenshot(path=screenshots / "i04-index.png")

    # The exercise: the student's best score in the table, the charts above it.
    staff.locator(f"main a[href$='/dashboard/{EXERCISE}']").click()
    expect(staff).to_have_url(re.compile(rf"/dashboard/{EXERCISE}$"))
    expect(staff.locator("h1")).to_have_text("第6回 畳み込みニューラルネットワークの実装と学習")
    rows = table_rows(staff)
    expect(rows).to_have_count(1)
    demo = rows.first
    expect(demo.locator("th")).to_have_text("demo")
    expect(demo.locator("td.name")).to_have_text("Demo Student")
    expect(demo.locator("td.num.strong")).to_have_text("36")
    expect(demo.locator("td").nth(3)).to_have_text("36")  # the latest submission's score
    expect(staff.locator(".count")).to_have_text("1 人中 1 人を表示")
    plots = staff.locator("section.plots figure")
    expect(plots).to_have_count(4)
    expect(staff.locator("section.plots svg")).to_have_count(4)
    expect(staff.locator("#plot-scores svg")).to_have_attribute("aria-label", "得点の分布")
    staff.screenshot(path=screenshots / "i05-exercise.png", full_page=True)
    staff.locator("#students").scroll_into_view_if_needed()
    staff.screenshot(path=screenshots / "i06-exercise-table.png")
    wide = staff.evaluate("document.documentElement.scrollWidth")
    assert wide <= STAFF_VIEWPORT["width"], f"the exercise page scrolls sideways ({wide} px)"

    # Filters, through the form: below 50 keeps the student, below 30 and "no submission yet"
    # leave them out; "clear" brings everyone back.
    apply_filters(staff, below="50")
    expect(staff).to_have_url(re.compile(r"[?&]below=50\b"))
    expect(rows).to_have_count(1)
    expect(staff.locator("#below")).to_have_value("50")
    staff.screenshot(path=screenshots / "i07-filter-below-50.png")
    apply_filters(staff, below="30")
    expect(rows).to_have_count(0)
    expect(staff.locator(".count")).to_have_text("1 人中 0 人を表示")
    apply_filters(staff, show="missing")
    expect(staff).to_have_url(re.compile(r"[?&]show=missing\b"))
    expect(rows).to_have_count(0)
    expect(staff.locator("#show")).to_have_value("missing")
    expect(staff.locator(".count")).to_have_text("1 人中 0 人を表示")
    staff.locator("#students").scroll_into_view_if_needed()
    staff.screenshot(path=screenshots / "i08-filter-missing.png")
    apply_filters(staff, show="submitted")
    expect(rows).to_have_count(1)
    staff.locator("form.filters .filter-actions a").click()
    expect(staff).to_have_url(re.compile(rf"/dashboard/{EXERCISE}#students$"))
    expect(rows).to_have_count(1)

    # The gradebook, downloaded through the page's link.
    with staff.expect_download() as caught:
        staff.locator(".exports a").first.click()
    download = caught.value
    assert re.fullmatch(rf"{EXERCISE}-grades-\d{{8}}\.csv", download.suggested_filename), \
        download.suggested_filename
    raw = Path(download.path()).read_bytes()
    assert raw.startswith("\ufeff".encode()), "no byte-order mark (Excel needs it)"
    table = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert table[0] == ["student_id", "name", "email", "score", "raw", "penalty", "adjustment",
                        "late", *ITEMS]
    assert len(table) == 2, table
    row = dict(zip(table[0], table[1], strict=True))
    assert (row["student_id"], row["name"], row["score"]) == ("demo", "Demo Student", "36")
    # no schedule: the score as graded, nothing late, no penalty, no adjustment
    assert (row["raw"], row["penalty"], row["adjustment"], row["late"]) == ("36", "0", "0", "")
    assert [row[item] for item in FIRST_SIX] == ["6"] * 6, row
    assert all(row[item] in ("", "0") for item in ITEMS[6:]), row

    # The submission's own page, then a regrade with its CSRF-protected button.
    demo.locator("td.num.strong a").click()
    expect(staff).to_have_url(re.compile(rf"/dashboard/submissions/{submission_id}$"))
    expect(staff.locator("h1")).to_have_text(f"提出 #{submission_id}")
    runs = staff.locator("table.runs tbody tr")
    expect(runs).to_have_count(1)
    expect(staff.locator(".summary .big")).to_have_text("36")
    expect(staff.locator("ol.items > li")).to_have_count(len(ITEMS))
    staff.locator("section.notebook iframe").scroll_into_view_if_needed()  # loading="lazy"
    executed = staff.frame_locator("section.notebook iframe").locator("body")
    expect(executed).to_contain_text("pooled_image", timeout=20_000)
    staff.screenshot(path=screenshots / "i09-submission.png", full_page=True)
    button = staff.locator("form.regrade button[type=submit]")
    expect(button).to_be_enabled()
    expect(staff.locator("form.regrade input[name=csrf_token]")).to_have_value(re.compile(r".{20,}"))
    forged = staff.request.post(f"{url}/dashboard/submissions/{submission_id}/regrade",
                                max_redirects=0)
    assert forged.status == 400, f"a POST without the CSRF token got {forged.status}"
    button.click()
    expect(staff).to_have_url(re.compile(rf"/dashboard/submissions/{submission_id}$"))
    expect(staff.locator(".flash")).to_have_text(re.compile(r"再採点を登録しました \(実行 #\d+\)。"))
    expect(runs).to_have_count(2)
    newest = runs.first
    expect(newest.locator("th .muted")).to_have_text("再採点")
    expect(newest.locator("td .badge").first).to_have_text(PENDING_OR_DONE)
    expect(runs.nth(1).locator("th .muted")).to_have_text("初回")
    staff.screenshot(path=screenshots / "i10-regrade-queued.png", full_page=True)

    # The queue: the embedded worker is alive.
    staff.locator("header nav a[href$='/dashboard/queue']").click()
    expect(staff.locator("h1")).to_have_text("採点キュー")
    workers = staff.locator("section.card", has=staff.locator("h2", has_text="ワーカー"))
    expect(workers.locator("tbody tr")).to_have_count(1)
    expect(workers.locator("tbody tr .badge")).to_have_text("稼働中")
    expect(staff.locator(".tiles > div", has_text="稼働中のワーカー").locator("dd")).to_have_text("1")
    staff.screenshot(path=screenshots / "i11-queue.png", full_page=True)

    # The regrade finishes with the same score.
    staff.goto(f"{url}/dashboard/submissions/{submission_id}")
    deadline = time.monotonic() + 60
    while runs.first.locator("td .badge").first.text_content() != "採点済み":
        assert time.monotonic() < deadline, "the regrade was not graded within 60 s"
        staff.wait_for_timeout(500)
        staff.reload()
    expect(runs.first.locator("td.num").first).to_have_text("36")
    staff.screenshot(path=screenshots / "i12-regraded.png", full_page=True)

    for tab in (page, staff):
        assert tab.console_errors == [], tab.console_errors
        assert tab.failed_responses == [], tab.failed_responses
    assert time.monotonic() - started < 90, "the flow should take about a minute at most"
