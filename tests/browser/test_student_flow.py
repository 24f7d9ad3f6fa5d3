"""A student in a real browser against the real service: log in with the demo token, upload a
short notebook through the file input, follow the grading live, read the feedback and the
executed notebook, switch the language. The notebook is the reference solution cut after the
pooling exercise, so the real sandbox grades it in seconds (36 of 100 points)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from grader.config import PROJECT_ROOT
from tests.browser.conftest import LiveService

pytestmark = [pytest.mark.browser, pytest.mark.sandbox]

SOLUTION = PROJECT_ROOT / "reference" / "chap06_cnn" / "solution.ipynb"
FIRST_SIX = ["conv1", "conv2", "conv3", "pool1", "pool2", "pool3"]
CELL_OF = re.compile(r"セル (\d+) / (\d+) を実行中")


def short_notebook(folder: Path) -> Path:
    """The solution's cells up to and including the one with id ``pool3``."""
    nb = nbformat.read(SOLUTION, as_version=4)
    ids = [cell.get("id") for cell in nb.cells]
    nb.cells = nb.cells[: ids.index("pool3") + 1]
    path = folder / "pooling_only.ipynb"
    nbformat.write(nb, path)
    return path


#: What the submission page shows at one moment; ``load`` is drawn once per page load.
SAMPLE = """() => {
    window.__since = window.__since || Math.random();
    const shown = (sel) => {
        const el = document.querySelector(sel);
        return el && !el.closest('[hidden]') ? el.textContent.trim() : null;
    };
    const bar = document.querySelector('[data-bar]');
    return {load: window.__since, badge: shown('.section-head .badge'),
            cell: shown('[data-cell]'), queue: shown('[data-queue]'),
            bar: bar && !bar.closest('[hidden]') ? bar.value : null,
            score: shown('.summary .big')};
}"""


def watch_grading(page: Page, timeout: float = 90) -> list[dict]:
    """The submission page sampled every 0.2 s until the feedback replaces the live panel;
    samples that share ``load`` were updated in place by the page's polling, not by a reload."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            sample = page.evaluate(SAMPLE)
        except PlaywrightError as error:  # the page reloaded under us: sample the new one
            if "context was destroyed" not in str(error):
                raise
            page.wait_for_load_state()
            continue
        if not seen or sample != seen[-1]:
            seen.append(sample)
        if sample["score"] is not None:
            return seen
        page.wait_for_timeout(200)
    raise AssertionError(f"no feedback after {timeout:.0f} s; the page showed: {seen[-5:]}")


@pytest.mark.timeout(180)
def test_a_student_submits_follows_the_grading_and_reads_the_feedback(
        live_service: LiveService, page: Page, screenshots: Path, tmp_path: Path):
    started = time.monotonic()
    notebook = short_notebook(tmp_path)

    # Log in with the token the service printed on its first start.
    page.goto(f"{live_service.url}/login")
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.locator("h1")).to_have_text("ログイン")
    page.screenshot(path=screenshots / "01-login.png")
    page.fill("#token", live_service.token)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("ノートブックの提出")
    page.wait_for_load_state("load")  # app.js wires the file input on DOMContentLoaded

    # Choose the lecture's exercise (the course has several): its dates are the ones shown.
    page.select_option("#exercise", "chap06_cnn")
    expect(page.locator('.own-dates[data-exercise="chap06_cnn"]')).to_be_visible()
    expect(page.locator(".own-dates:visible")).to_have_count(1)

    # Upload through the file input.
    page.set_input_files("#notebook", notebook)
    expect(page.locator("[data-chosen]")).to_have_text("選択したファイル: pooling_only.ipynb")
    page.screenshot(path=screenshots / "02-upload.png")
    page.click("form.upload button[type=submit]")
    expect(page).to_have_url(re.compile(r"/submissions/\d+$"))
    expect(page.locator("h1")).to_have_text(re.compile(r"提出 #\d+"))
    expect(page.locator(".flash")).to_contain_text("提出を受け付けました")

    # Follow it live.
    page.wait_for_selector('[data-when="running"]:not([hidden]), .summary', timeout=60_000)
    page.screenshot(path=screenshots / "03-live.png")
    seen = watch_grading(page)
    running = [s for s in seen if s["badge"] == "採点中" and s["cell"]]
    assert running, f"the page never showed the run in progress: {seen}"
    cells = [CELL_OF.fullmatch(s["cell"]) for s in running]
    counted = [(int(m[1]), int(m[2])) for m in cells if m]
    assert counted, f"no 'cell n of m' line while running: {running}"
    assert all(0 < n <= m for n, m in counted)
    assert max(s["bar"] or 0 for s in running) > 0  # the progress bar moved
    in_place = [s for s in running if s["load"] == running[0]["load"]]
    assert len(in_place) >= 2, f"the running page never updated itself: {seen}"
    print("grading as the page showed it:", [(s["badge"], s["cell"]) for s in seen])

    # The feedback: 36 of 100, six items right, the rest not reached.
    expect(page.locator(".section-head .badge")).to_have_text("採点済み")
    expect(page.locator(".summary .big")).to_have_text("36")
    expect(page.locator(".summary .value")).to_contain_text("/ 100")
    items = page.locator("ol.items > li")
    expect(items).to_have_count(11)
    for item_id in FIRST_SIX:
        expect(page.locator(f"#item-{item_id} .badge")).to_have_text("正解")
    expect(page.locator("#item-conv1 h3")).to_have_text("畳み込み1 (ストライド1, パディングなし)")
    expect(page.locator("#item-accuracy .points")).to_have_text("0 / 24 点")
    page.screenshot(path=screenshots / "04-graded-ja.png", full_page=True)

    # The executed notebook, in its sandboxed frame.
    frame = page.locator("section.notebook iframe")
    frame.scroll_into_view_if_needed()
    notebook_body = page.frame_locator("section.notebook iframe").locator("body")
    expect(notebook_body).to_contain_text("pooled_image", timeout=20_000)
    expect(notebook_body).to_contain_text("tf.nn.avg_pool")
    box = frame.bounding_box()
    assert box and box["width"] > 600 and box["height"] > 300
    page.screenshot(path=screenshots / "05-notebook-frame.png")

    # English, remembered on the next page, and back.
    page.locator(".langs a[hreflang=en]").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1")).to_have_text(re.compile(r"Submission #\d+"))
    expect(page.locator(".summary .label")).to_have_text("Score")
    expect(page.locator("#item-conv1 h3")).to_have_text("Convolution 1 (stride 1, VALID)")
    expect(page.locator("#item-conv1 .badge")).to_have_text("Correct")
    page.screenshot(path=screenshots / "06-graded-en.png", full_page=True)
    page.click("header nav a[href$='/submissions']")
    expect(page.locator("h1")).to_have_text("My submissions")
    expect(page.locator("table.history tbody tr")).to_have_count(1)
    expect(page.locator("table.history td.num")).to_have_text("36 / 100")
    page.screenshot(path=screenshots / "07-history-en.png")
    page.locator(".langs a[hreflang=ja]").click()
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.locator("h1")).to_have_text("提出履歴")
    page.locator("table.history a").click()  # no ?lang= on the link: remembered
    expect(page.locator("h1")).to_have_text(re.compile(r"提出 #\d+"))
    expect(page.locator("#item-conv1 .badge")).to_have_text("正解")

    assert page.console_errors == [], page.console_errors
    assert page.failed_responses == [], page.failed_responses
    assert time.monotonic() - started < 90, "the flow should take about a minute at most"
