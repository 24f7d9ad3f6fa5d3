"""The LTI platform of the tests (:mod:`tests.lti`) in Chromium: its launch page and its answer
to the authorization request are forms that submit themselves, and its login cookie reaches
its authorization endpoint from the tool's redirect, so a browser goes from the platform's page
to the tool's launch URL with nothing clicked, as it does from Moodle or Canvas."""

from __future__ import annotations

from collections.abc import Iterator

import jwt
import pytest
from playwright.sync_api import Page

from tests.lti import KeyPair, Platform, ResourceLink, Role, User
from tests.lti.fake_tool import CLIENT_ID, FakeTool

pytestmark = pytest.mark.browser


@pytest.fixture
def lms_and_tool() -> Iterator[tuple[Platform, FakeTool]]:
    with FakeTool(KeyPair.generate()) as tool, Platform() as lms:
        tool.platform_auth = lms.auth_url
        lms.register_tool(tool.registration())
        yield lms, tool
        assert lms.errors == []


@pytest.mark.parametrize("login_method", ["POST", "GET"])
def test_a_browser_goes_from_the_platform_to_the_tool_launch(
        page: Page, lms_and_tool: tuple[Platform, FakeTool], login_method: str) -> None:
    lms, tool = lms_and_tool
    lms.login_method = login_method
    link = ResourceLink("rl-1", "CNN", {"exercise": "chap06_cnn"})
    page.goto(lms.launch_url(User("alice-sub", "Alice"), [Role.LEARNER], link))
    page.wait_for_url(f"{tool.base}/launch")
    assert page.text_content("body") == "launched"
    posted = tool.launches[-1]
    assert posted["state"] == tool.state
    key = jwt.PyJWKClient(lms.jwks_url).get_signing_key_from_jwt(posted["id_token"])
    claims = jwt.decode(posted["id_token"], key.key, algorithms=["RS256"], audience=CLIENT_ID)
    assert claims["nonce"] == tool.nonce and claims["sub"] == "alice-sub"
