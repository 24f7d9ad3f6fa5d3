"""An LTI launch in Chromium: from the platform's page (:mod:`tests.lti`) through the tool's
cookie check, the platform's authorization and the launch, to the exercise's upload page,
with nothing clicked; the page is the student's, under the pages' CSP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask_migrate import upgrade
from playwright.sync_api import Page, expect

from service import create_app
from tests.lti import Platform, ResourceLink, Role, ToolRegistration, User

pytestmark = pytest.mark.browser


@pytest.fixture
def tool_and_lms(tmp_path: Path, serve_app) -> Iterator[tuple[str, Platform]]:
    app = create_app({"TESTING": True, "SECRET_KEY": "browser-lti-secret-key",
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'g.db'}",
                      "UPLOAD_DIR": str(tmp_path / "up"), "QUEUE": "embedded"})
    with app.app_context():
        upgrade()
    base = serve_app(app)
    with Platform() as lms:
        lms.register_tool(ToolRegistration.at(base))
        result = app.test_cli_runner().invoke(args=["lti", "register",
                                                    *lms.registration_options()])
        assert result.exit_code == 0, result.output
        yield base, lms
        assert lms.errors == []


@pytest.mark.timeout(60)
def test_a_learner_goes_from_the_platform_to_the_upload_page(
        page: Page, tool_and_lms: tuple[str, Platform], screenshots: Path) -> None:
    base, lms = tool_and_lms
    link = ResourceLink("rl-1", "CNN", {"exercise": "chap06_cnn"})
    page.goto(lms.launch_url(User("alice-sub", "Alice", "Liddell", "alice@example.org"),
                             [Role.LEARNER], link))
    page.wait_for_url(f"{base}/?exercise=chap06_cnn")
    expect(page.locator("#exercise")).to_have_value("chap06_cnn")
    expect(page.locator("#notebook")).to_be_visible()
    expect(page.locator(".who")).to_contain_text("Alice Liddell")
    page.screenshot(path=str(screenshots / "lti-upload.png"))
    assert page.console_errors == []
