"""The dashboard's charts as a browser draws them: the partial on the tests' preview page
(``tests/browser/preview.py``), a made-up class of 36 students, under the pages' real CSP."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.preview import preview_app, seed_class

pytestmark = pytest.mark.browser


@pytest.fixture
def preview_url(tmp_path: Path, serve_app) -> str:
    app = preview_app(tmp_path)
    seed_class(app)
    return serve_app(app) + "/_test/plots/chap06_cnn"


def chart_boxes(page: Page) -> list[dict]:
    return page.evaluate("""() => [...document.querySelectorAll('.plots svg')].map(svg => {
        const box = svg.getBoundingClientRect();
        return {left: box.left, top: box.top, width: box.width, height: box.height,
                label: svg.getAttribute('aria-label'),
                bars: svg.querySelectorAll('rect.bar').length};
    })""")


@pytest.mark.timeout(60)
def test_four_charts_in_two_columns_on_a_laptop_and_one_on_a_phone(
        page: Page, preview_url: str, screenshots: Path):
    page.goto(preview_url + "?lang=ja")
    expect(page.locator(".plots figure")).to_have_count(4)
    boxes = chart_boxes(page)
    assert [box["label"] for box in boxes] == ["得点の分布", "測定したテスト精度の分布",
                                              "項目ごとの正解率", "1時間ごとの提出数"]
    assert all(box["bars"] > 0 for box in boxes)
    assert len({round(box["left"]) for box in boxes}) == 2  # two columns
    assert all(box["width"] >= 420 for box in boxes)  # drawn near their natural 500 px
    page.screenshot(path=screenshots / "plots-laptop-ja.png", full_page=True)

    page.goto(preview_url + "?lang=en")
    expect(page.locator(".plots svg").first).to_have_attribute("aria-label", "Scores")
    page.screenshot(path=screenshots / "plots-laptop-en.png", full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    boxes = chart_boxes(page)
    assert len({round(box["left"]) for box in boxes}) == 1  # one column
    assert all(box["left"] >= 0 and box["left"] + box["width"] <= 390 for box in boxes)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    page.screenshot(path=screenshots / "plots-phone-en.png", full_page=True)

    assert page.console_errors == [], page.console_errors  # a CSP violation would show here
    assert page.failed_responses == [], page.failed_responses
