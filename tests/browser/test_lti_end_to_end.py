"""Issue 19's acceptance test, in Chromium against the real service (``python -m service``, the
real bubblewrap sandbox) and the tests' LTI 1.3 platform (:mod:`tests.lti`: its own keys,
launches signed with PyJWT, a JWKS, an OAuth2 token endpoint and line items' ``/scores`` on
127.0.0.1).

The platform is registered in the tool with the command line an administrator types
(``flask --app service lti register ...``, a process of its own on the service's database); a
learner launched from the platform's page lands on the exercise's upload page, uploads a short
notebook through the form and follows it until graded; the platform's line item then holds the
score the service shows (within 60 s of the verdict), sent with a token the tool asked for with
a JWT signed by a key published at ``/lti/jwks``. The same launch posted again, and a launch
signed by a key the platform never published, are refused with 4xx pages.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, select

from grader.config import PROJECT_ROOT, GraderConfig
from service.models import GradingRun
from tests.browser.conftest import LiveService, run_service, service_python
from tests.browser.test_student_flow import short_notebook
from tests.lti import KeyPair, Platform, ResourceLink, Role, ToolRegistration, User

pytestmark = [pytest.mark.browser, pytest.mark.sandbox]

EXERCISE = "chap06_cnn"
LEARNER = User("hanako-sub-7f3a", "Hanako", "Yamada", "hanako@example.org")
LINK = ResourceLink("rl-cnn", "CNN")


@pytest.fixture(scope="module")
def tool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The service of this module alone, whose ``PUBLIC_URL`` is the address the platform
    registers (the tool's URLs in launches, its token requests' keys)."""
    with run_service(tmp_path_factory.mktemp("lti-service"), public_url=True) as service:
        yield service


@pytest.fixture
def lms(tool: LiveService) -> Iterator[Platform]:
    """The platform, with the tool added on its side and registered on the tool's side by the
    ``lti register`` command."""
    with Platform() as platform:
        platform.register_tool(ToolRegistration.at(tool.url, "grader", ("1",)))
        command = [service_python(), "-m", "flask", "--app", "service", "lti", "register",
                   *platform.registration_options()]
        done = subprocess.run(command, cwd=PROJECT_ROOT, env=tool.env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"registered {platform.issuer} client id grader" in done.stdout, done.stdout
        yield platform


def finished_at(tool: LiveService, submission_id: int) -> dt.datetime:
    """When the submission's run was graded (the verdict), as the service recorded it."""
    engine = create_engine(tool.env["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            moment = connection.execute(
                select(GradingRun.finished_at).where(GradingRun.submission_id == submission_id)
                .order_by(GradingRun.id.desc())).scalars().first()
    finally:
        engine.dispose()
    assert moment is not None, f"submission {submission_id} has no finished run"
    return moment.replace(tzinfo=dt.UTC)


def signed_by_the_tools_key(tool: LiveService, assertion: str) -> str:
    """The ``kid`` of ``assertion`` once its signature checks against that key of the tool's
    ``/lti/jwks`` (AssertionError if the key set lacks it)."""
    kid = jwt.get_unverified_header(assertion)["kid"]
    published = requests.get(f"{tool.url}/lti/jwks", timeout=10).json()["keys"]
    keys = {key["kid"]: key for key in published}
    assert kid in keys, (kid, list(keys))
    jwt.decode(assertion, jwt.PyJWK(keys[kid]).key, algorithms=["RS256"],
               options={"verify_aud": False, "verify_exp": False})
    return kid


@pytest.mark.timeout(240)
def test_a_learner_launched_from_the_lms_is_graded_and_the_lms_gets_the_score(
        tool: LiveService, lms: Platform, page: Page, screenshots: Path, tmp_path: Path):
    started = time.monotonic()
    points = GraderConfig.from_env().exercise(EXERCISE).max_score
    item = lms.add_line_item("CNN", points, resource_link=LINK.id, resource_id=EXERCISE)

    # The platform's page -> the tool's login -> the platform's authorization -> the launch.
    page.goto(lms.launch_url(LEARNER, [Role.LEARNER], LINK, custom={"exercise": EXERCISE}))
    page.wait_for_url(f"{tool.url}/?exercise={EXERCISE}")
    expect(page).to_have_title(re.compile(r"^ノートブックの提出 · "))
    expect(page.locator("h1")).to_have_text("ノートブックの提出")
    expect(page.locator(".who")).to_contain_text("Hanako Yamada")
    expect(page.locator("#exercise")).to_have_value(EXERCISE)
    page.wait_for_load_state("load")  # app.js wires the file input on DOMContentLoaded
    page.screenshot(path=screenshots / "01-launched.png")

    # Upload through the form, follow it until graded.
    page.set_input_files("#notebook", short_notebook(tmp_path))
    expect(page.locator("[data-chosen]")).to_have_text("選択したファイル: pooling_only.ipynb")
    page.click("form.upload button[type=submit]")
    expect(page).to_have_url(re.compile(r"/submissions/\d+$"))
    submission_id = int(page.url.rsplit("/", 1)[1])
    shown = page.locator(".summary .big")
    expect(shown).to_be_visible(timeout=120_000)
    expect(page.locator(".section-head .badge")).to_have_text("採点済み")
    score = float(shown.inner_text())
    expect(page.locator(".summary .value")).to_contain_text(f"/ {points:g}")
    page.screenshot(path=screenshots / "02-graded.png", full_page=True)
    graded = time.monotonic()

    # The platform's line item holds it, within 60 s of the verdict.
    result = lms.wait_for_result(item, LEARNER.sub, timeout=60, given=score)
    verdict = finished_at(tool, submission_id)
    delay = result.received_at - verdict.timestamp()
    assert 0 <= delay <= 60, f"the score came {delay:.1f} s after the verdict"
    body = result.body
    assert body["userId"] == LEARNER.sub
    assert body["scoreGiven"] == score and body["scoreMaximum"] == points
    assert body["gradingProgress"] == "FullyGraded"
    assert body["activityProgress"] in ("Submitted", "Completed")
    assert f"{tool.url}/submissions/{submission_id}" in body.get("comment", "")
    assert result.applied
    received = [s for s in lms.gradebook.received if s.user_id == LEARNER.sub]
    assert len(received) == 1, received  # once, no earlier or later copy
    # ... sent with a token the platform granted for a JWT signed by a key of /lti/jwks.
    tokens = lms.requests_to("token")
    assert tokens and all(r.status == 200 for r in tokens), [(r.status, r.body) for r in tokens]
    for request in tokens:
        assert isinstance(request.body, dict)
        signed_by_the_tools_key(tool, request.body["client_assertion"])
    scores = lms.requests_to("scores")
    assert [r.status // 100 for r in scores] == [2], [(r.status, r.body) for r in scores]
    print(f"score {score:g}/{points:g} at the LMS {delay:.1f} s after the verdict "
          f"({time.monotonic() - graded:.1f} s after the page showed it)")

    # The same launch posted again, from this browser (the tool's cookies with it): refused.
    post = lms.launch_posts[-1]
    with page.expect_navigation() as replay:
        page.evaluate("""([action, fields]) => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = action;
            for (const [name, value] of Object.entries(fields)) {
                const input = document.createElement('input');
                input.type = 'hidden'; input.name = name; input.value = value;
                form.appendChild(input);
            }
            document.body.appendChild(form);
            form.submit();
        }""", [post.redirect_uri, {"id_token": post.id_token, "state": post.state}])
    assert replay.value is not None and replay.value.status == 409, replay.value
    expect(page.locator("#lti-refused")).to_have_attribute("data-code", "replayed")
    page.screenshot(path=screenshots / "03-replayed.png")

    # A launch signed by a key the platform never published: refused.
    with page.expect_response(f"{tool.url}/lti/launch") as forged:
        page.goto(lms.launch_url(LEARNER, [Role.LEARNER], LINK, custom={"exercise": EXERCISE},
                                 signing_key=KeyPair.generate()))
    assert forged.value.status == 401, forged.value.status
    expect(page.locator("#lti-refused")).to_have_attribute("data-code", "signature")
    page.screenshot(path=screenshots / "04-forged.png")

    assert lms.errors == [], lms.errors
    assert page.console_errors == [], page.console_errors
    assert sorted(status for status, _ in page.failed_responses) == [401, 409], \
        page.failed_responses
    assert lms.gradebook.received == received, "no other score was sent"
    print("wall time of the flow:", json.dumps(round(time.monotonic() - started, 1)), "s")
