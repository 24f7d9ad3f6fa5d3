"""The LTI 1.3 launch end to end, on SQLite and PostgreSQL: the service served on 127.0.0.1
and the platform of the tests (:mod:`tests.lti`, none of the tool's code), a browser played by
``requests`` (cookies kept, self-submitting forms followed).

A learner's launch logs in a student and lands on the exercise's upload page; an instructor's
opens the exercise's dashboard page and syncs the roster (Names and Roles); deep linking
answers the platform a signed resource link with ``custom.exercise`` and a line item. Every
forged, stale, replayed or misdirected launch is a 4xx page naming what was wrong, never a
500, and a learner never reaches the dashboard.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import WSGIRequestHandler, make_server

from service.domain.instructors import authenticate
from service.domain.lti_accounts import (
    Person,
    is_instructor_roles,
    link_student,
    scoped_hash,
    student_accounts,
)
from service.domain.lti_links import score_targets
from service.domain.lti_registrations import platform_id_of, register_platform
from service.lti.cookies import FRAME_ORIGINS, mark_framed
from service.models import GradingRun, Instructor, LtiAccount, LtiLineItem, Student
from tests.lti import (
    KeyPair,
    MessageType,
    Platform,
    ResourceLink,
    Role,
    ToolRegistration,
    User,
    claims,
    follow_forms,
)
from tests.lti.serving import serve_in_thread
from tests.service.service_support import add_queued_runs, in_session

CNN = ResourceLink("rl-cnn", "CNN", {"exercise": "chap06_cnn"})
ALICE = User("alice-sub", "Alice", "Liddell", "alice@example.org")
TEACHER = User("teacher-sub", "Tess", "Teacher", "tess@example.org")


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any) -> None:
        pass


@pytest.fixture
def tool(app: Flask) -> Iterator[str]:
    """The service served on a free port of 127.0.0.1: its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    serve_in_thread(server, name="lti-tool-service")
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@pytest.fixture
def lms(app: Flask, tool: str) -> Iterator[Platform]:
    """The platform with the tool registered on both sides (deployment 1 only in the tool)."""
    with Platform() as platform:
        platform.register_tool(ToolRegistration.at(tool, "grader", ("1", "2")))
        result = app.test_cli_runner().invoke(
            args=["lti", "register", *platform.registration_options("1")])
        assert result.exit_code == 0, result.output
        yield platform


def launch(lms: Platform, user: User, roles: list[str], link: ResourceLink | None = CNN,
           browser: requests.Session | None = None, **options: Any) -> requests.Response:
    """Open the platform's launch page in ``browser`` and follow it to the tool's answer."""
    browser = browser or requests.Session()
    page = browser.get(lms.launch_url(user, roles, link, **options), timeout=30)
    return follow_forms(browser, page)


def refusal(response: requests.Response) -> str:
    """The code of the tool's refusal page (and it is a 4xx page)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:2000])
    found = re.search(r'id="lti-refused" data-code="([a-z_]+)"', response.text)
    assert found, response.text[:2000]
    return found.group(1)


def query(app: Flask, work: Callable[[Any], Any]) -> Any:
    return in_session(app, work)


# --- single sign-on ---------------------------------------------------------------------------


def test_a_learner_launch_logs_in_a_student_on_the_upload_page(app: Flask, tool: str,
                                                               lms: Platform):
    browser = requests.Session()
    page = launch(lms, ALICE, [Role.LEARNER], browser=browser)
    assert page.status_code == 200, page.text[:2000]
    assert page.url.startswith(f"{tool}/?exercise=chap06_cnn")
    assert 'value="chap06_cnn" selected' in page.text
    assert "Alice Liddell" in page.text  # signed in
    # the student, the account and the link with its grade and roster endpoints
    student = query(app, lambda s: s.execute(select(Student.student_id, Student.name,
                                                    Student.email)).one())
    assert tuple(student) == ("alice", "Alice Liddell", "alice@example.org")
    link = query(app, lambda s: s.execute(select(LtiLineItem)).scalar_one())
    assert (link.exercise, link.resource_link_id, link.deployment_id) == (
        "chap06_cnn", "rl-cnn", "1")
    assert link.lineitems_url == lms.lineitems_url and link.memberships_url == lms.memberships_url
    assert "https://purl.imsglobal.org/spec/lti-ags/scope/score" in link.scopes
    # a learner never reaches the dashboard
    for path in ("/dashboard/", "/dashboard/chap06_cnn", "/dashboard/lti"):
        assert browser.get(tool + path, timeout=30).status_code == 403
    # the same user again: the same student, no second one
    again = launch(lms, ALICE, [Role.LEARNER])
    assert again.status_code == 200
    assert query(app, lambda s: len(s.scalars(select(Student)).all())) == 1
    assert query(app, lambda s: len(s.scalars(select(LtiAccount)).all())) == 1
    # a learner never reads another student's submission (the API wants a token: the session is none)
    [run_id] = add_queued_runs(app, 1)
    other = query(app, lambda s: s.get(GradingRun, run_id).submission_id)
    for path, status in ((f"/submissions/{other}", 404), (f"/submissions/{other}/status.json", 404),
                         (f"/api/submissions/{other}", 401)):
        assert browser.get(tool + path, timeout=30).status_code == status, path


def test_a_learner_is_linked_to_the_roster_student_of_the_same_email(
        app: Flask, tokens: dict[str, str], lms: Platform):
    """(``tokens``: a roster imported with tokens; they keep working beside the LMS.)"""
    page = launch(lms, User("a2", "Alice", "L", "ALICE@example.org"), [Role.LEARNER])
    assert page.status_code == 200
    account = query(app, lambda s: s.execute(select(LtiAccount)).scalar_one().student.student_id)
    assert account == "alice"  # the roster's alice, not a new student


def test_an_instructor_launch_opens_the_dashboard_and_syncs_the_roster(app: Flask, tool: str,
                                                                       lms: Platform):
    lms.enrol(User("carol-sub", "Carol", "C", "carol@example.org"), [Role.LEARNER])
    lms.enrol(User("dave-sub", "Dave", "D"), [Role.LEARNER])
    browser = requests.Session()
    page = launch(lms, TEACHER, [Role.INSTRUCTOR], browser=browser)
    assert page.status_code == 200, page.text[:2000]
    assert page.url == f"{tool}/dashboard/chap06_cnn"
    assert "学生の作成 2 人" in page.text  # the roster sync's message
    students = query(app, lambda s: sorted(s.execute(select(Student.student_id)).scalars()))
    assert students[0] == "carol" and students[1].startswith("lti-") and len(students) == 2
    instructor = query(app, lambda s: s.execute(select(Instructor)).scalar_one())
    assert instructor.username == "lti-tess" and not instructor.must_change_password
    # no password opens an instructor made by a launch
    with app.app_context():
        assert authenticate("lti-tess", instructor.password_hash) is None
    # the sync again, from the command line; then with the platform down: nothing changes
    result = app.test_cli_runner().invoke(args=["lti", "sync-roster"])
    assert result.exit_code == 0 and "0 students created, 2 linked" in result.output
    lms.set_outage("memberships")
    lms.enrol(User("erin-sub", "Erin", "E", "erin@example.org"), [Role.LEARNER])
    result = app.test_cli_runner().invoke(args=["lti", "sync-roster"])
    assert result.exit_code == 1 and "nothing changed" in result.output
    assert query(app, lambda s: len(s.scalars(select(Student)).all())) == 2


def test_deep_linking_answers_a_signed_resource_link_with_a_line_item(app: Flask, tool: str,
                                                                      lms: Platform):
    browser = requests.Session()
    picker = launch(lms, TEACHER, [Role.INSTRUCTOR], None, browser=browser,
                    message_type=MessageType.DEEP_LINKING)
    assert picker.status_code == 200 and 'value="chap06_cnn"' in picker.text, picker.text[:2000]
    token = re.search(r'name="csrf_token" value="([^"]+)"', picker.text)
    assert token
    answer = browser.post(f"{tool}/lti/deep-link", timeout=30,
                          data={"csrf_token": token.group(1), "exercise": "chap06_cnn"})
    done = follow_forms(browser, answer)
    assert done.status_code == 200, done.text[:2000]
    [result] = lms.deep_links
    [item] = result.content_items
    assert item["type"] == "ltiResourceLink" and item["custom"] == {"exercise": "chap06_cnn"}
    [line_item] = result.line_items
    assert line_item.score_maximum == 100 and line_item.resource_id == "chap06_cnn"
    # the placed link launches a learner into the exercise
    page = launch(lms, ALICE, [Role.LEARNER], result.links[0])
    assert page.status_code == 200 and "exercise=chap06_cnn" in page.url
    # a learner cannot pick
    refused = launch(lms, ALICE, [Role.LEARNER], None, message_type=MessageType.DEEP_LINKING)
    assert refusal(refused) == "not_instructor"


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "code"), [
    ({"signing_key": "other"}, "signature"),
    ({"claim_overrides": {"aud": "someone-else"}}, "audience"),
    ({"claim_overrides": {"azp": "someone-else"}}, "audience"),
    ({"claim_overrides": "expired"}, "expired"),
    # a token living longer than its nonce is kept (a replay after two days), or past any
    # date a clock can hold (an overflow, not a 500)
    ({"claim_overrides": {"exp": int(time.time()) + 3 * 86400}}, "message"),
    ({"claim_overrides": {"exp": 10**20}}, "message"),
    ({"deployment_id": "2"}, "deployment"),
    ({"claim_overrides": {claims.VERSION: "1.1.0"}}, "message"),
    ({"claim_overrides": {claims.MESSAGE_TYPE: "LtiSomethingElse"}}, "message"),
    ({"custom": {"exercise": ""}, "link": ResourceLink("rl-x")}, "no_exercise"),
    ({"custom": {"exercise": "chap99"}}, "unknown_exercise"),
])
def test_a_bad_launch_is_a_clear_4xx_page(app: Flask, lms: Platform, options: dict[str, Any],
                                          code: str):
    options = dict(options)
    if options.get("signing_key") == "other":
        options["signing_key"] = KeyPair.generate()
    if options.get("claim_overrides") == "expired":
        options["claim_overrides"] = claims.expired()
    link = options.pop("link", CNN)
    assert refusal(launch(lms, ALICE, [Role.LEARNER], link, **options)) == code
    assert query(app, lambda s: s.scalars(select(Student)).all()) == []


def test_a_replayed_launch_and_another_browser_are_refused(app: Flask, tool: str,
                                                           lms: Platform):
    browser = requests.Session()
    assert launch(lms, ALICE, [Role.LEARNER], browser=browser).status_code == 200
    post = lms.launch_posts[-1]
    form = {"id_token": post.id_token, "state": post.state}
    # the same POST again, from the same browser
    assert refusal(browser.post(post.redirect_uri, data=form, timeout=30)) == "replayed"
    # from a browser without the tool's cookies
    assert refusal(requests.post(post.redirect_uri, data=form, timeout=30)) == "no_cookie"
    # from a browser that has its own login: the state is not its own
    other = requests.Session()
    other.get(f"{tool}/lti/login", timeout=30, allow_redirects=False, params={
        "iss": lms.issuer, "login_hint": "x", "client_id": "grader",
        "lti_cookies_checked": "1"})
    assert "lti1p3-session-id" in other.cookies
    assert refusal(other.post(post.redirect_uri, data=form, timeout=30)) == "state"


def test_an_unknown_platform_is_refused_at_login(tool: str, lms: Platform):
    answer = requests.get(f"{tool}/lti/login", timeout=30, params={
        "iss": "https://elsewhere.example.org", "login_hint": "x", "lti_cookies_checked": "1"})
    assert refusal(answer) == "unknown_platform"
    assert refusal(requests.post(f"{tool}/lti/login", timeout=30)) == "login"
    # the picker's answer is a form of the tool's own: CSRF applies
    assert requests.post(f"{tool}/lti/deep-link", timeout=30).status_code == 400


# --- what passback reads, keys, cookies and frames --------------------------------------------


def test_score_targets_are_the_links_of_the_students_courses(app: Flask, lms: Platform):
    lms.enrol(User("carol-sub", "Carol", "C", "carol@example.org"), [Role.LEARNER])
    assert launch(lms, ALICE, [Role.LEARNER]).status_code == 200
    assert launch(lms, TEACHER, [Role.TEACHING_ASSISTANT]).url.endswith("/dashboard/chap06_cnn")

    def targets(student_id: str, exercise: str = "chap06_cnn") -> list[tuple[str, str]]:
        def work(s: Any) -> list[tuple[str, str]]:
            pk = s.execute(select(Student.id).where(Student.student_id == student_id)).scalar()
            return [(t.line_item.resource_link_id, t.account.sub)
                    for t in score_targets(s, pk, exercise)]
        return query(app, work)

    assert targets("alice") == [("rl-cnn", "alice-sub")]
    assert targets("carol") == [("rl-cnn", "carol-sub")]  # synced at the TA's launch
    assert targets("alice", "chap05_mlp") == []
    assert query(app, lambda s: [a.sub for a in student_accounts(
        s, s.execute(select(Student.id).where(Student.student_id == "alice")).scalar())]) == [
        "alice-sub"]


def test_a_platform_key_rotation_is_followed(lms: Platform):
    assert launch(lms, ALICE, [Role.LEARNER]).status_code == 200  # the key set is cached
    lms.rotate_key(keep_old=False)
    assert launch(lms, ALICE, [Role.LEARNER]).status_code == 200  # unknown kid: fetched again


def test_the_cookie_check_page_carries_the_login_on(tool: str, lms: Platform):
    page = requests.post(f"{tool}/lti/login", timeout=30, data={
        "iss": lms.issuer, "login_hint": "alice-sub", "lti_message_hint": "h",
        "client_id": "grader", "target_link_uri": f"{tool}/lti/launch"})
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert 'id="lti-cookie-check" method="get"' in page.text
    assert 'name="lti_cookies_checked" value="1"' in page.text
    assert 'name="lti_message_hint" value="h"' in page.text
    assert "id=\"lti-new-window\"" in page.text


def test_over_https_the_launch_cookies_work_in_a_frame(make_app: Callable[..., Flask]):
    app = make_app(PUBLIC_URL="https://grader.example.org")
    with Platform() as platform:
        platform.register_tool(ToolRegistration.at("https://grader.example.org"))
        app.test_cli_runner().invoke(args=["lti", "register", *platform.registration_options()])
        answer = app.test_client().get("/lti/login", query_string={
            "iss": platform.issuer, "login_hint": "x", "client_id": "grader",
            "lti_cookies_checked": "1"})
    assert answer.status_code == 302
    assert answer.location.startswith(platform.auth_url)
    assert "redirect_uri=https%3A%2F%2Fgrader.example.org%2Flti%2Flaunch" in answer.location
    cookies_set = answer.headers.getlist("Set-Cookie")
    assert len(cookies_set) == 2  # the state and pylti1p3's session id
    assert all("Secure" in c and "SameSite=None" in c and "HttpOnly" in c for c in cookies_set)
    with app.test_request_context("/"):
        from flask import session

        interface = app.session_interface
        assert interface.get_cookie_samesite(app) == "Lax"  # a session not launched
        mark_framed("https://moodle.example.org/mod/lti/auth.php")
        assert (interface.get_cookie_samesite(app), interface.get_cookie_secure(app)) == (
            "None", True)
        assert session[FRAME_ORIGINS] == ["https://moodle.example.org"]
    plain = make_app()  # over plain http nothing changes
    with plain.test_request_context("/"):
        mark_framed("http://127.0.0.1:9")
        assert plain.session_interface.get_cookie_samesite(plain) == "Lax"


def test_a_launched_page_may_be_framed_by_its_platform(tool: str, lms: Platform):
    browser = requests.Session()
    page = launch(lms, ALICE, [Role.LEARNER], browser=browser)
    policy = page.headers["Content-Security-Policy"]
    assert policy.endswith(f"frame-ancestors 'self' {lms.issuer}")
    plain = requests.get(f"{tool}/login", timeout=30).headers["Content-Security-Policy"]
    assert plain.endswith("frame-ancestors 'self'")


# --- who a platform's user is -----------------------------------------------------------------


def test_student_ids_are_derived_uniquely_and_stably(app: Flask, tokens: dict[str, str]):
    with app.app_context():
        from service.extensions import db

        register_platform(db.session, "https://lms.example.org", "c", ["1"],
                          "https://lms.example.org/a", "https://lms.example.org/t",
                          "https://lms.example.org/k")
        pid = platform_id_of(db.session, "https://lms.example.org", "c")

        def student_of(person: Person) -> str:
            account, _made = link_student(db.session, pid, "https://lms.example.org", person)
            db.session.commit()
            assert account.student is not None
            return account.student.student_id

        digest = scoped_hash("https://lms.example.org", "s1")
        # alice@other.org is not the roster's alice (another email): a platform-scoped id
        assert student_of(Person("s1", "Alice Other", "alice@other.org")) == f"lti-{digest[:10]}"
        assert student_of(Person("s1", "Alice Renamed")) == f"lti-{digest[:10]}"  # stable
        assert student_of(Person("s2", "Num", "n@x.org", sourcedid="S 123")) == "S123"
        # the roster's bob by his student number, though the email differs
        assert student_of(Person("s3", "Bob", "bob@lms.org", sourcedid="bob")) == "bob"
        # a second platform user with bob's number is not linked to bob again
        assert student_of(Person("s4", "Bob 2", "", sourcedid="bob")).startswith("lti-")
        assert db.session.get(Student, db.session.execute(select(Student.id).where(
            Student.student_id == "bob")).scalar()).email == "bob@lms.org"


@pytest.mark.parametrize(("roles", "staff"), [
    ([Role.LEARNER], False), ([Role.INSTITUTION_STUDENT], False), ([], False),
    ([Role.CONTENT_DEVELOPER], False), ([Role.INSTRUCTOR], True),
    ([Role.TEACHING_ASSISTANT], True), ([Role.ADMINISTRATOR], True),
    (["http://purl.imsglobal.org/vocab/lis/v2/membership#Administrator"], True),
    (["Instructor"], True), ([Role.LEARNER, Role.INSTRUCTOR], True),
])
def test_course_staff_roles(roles: list[str], staff: bool):
    assert is_instructor_roles(roles) is staff


def test_the_dashboard_button_syncs_the_roster(tool: str, lms: Platform):
    browser = requests.Session()
    assert launch(lms, TEACHER, [Role.INSTRUCTOR], browser=browser).status_code == 200
    lms.enrol(User("fay-sub", "Fay", "F", "fay@example.org"), [Role.LEARNER])
    page = browser.get(f"{tool}/dashboard/lti?lang=en", timeout=30)
    assert 'id="sync-roster"' in page.text and lms.issuer in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    done = browser.post(f"{tool}/dashboard/lti/roster", data={"csrf_token": token.group(1)},
                        timeout=30)
    assert done.status_code == 200 and done.url.split("#")[0].endswith("/dashboard/lti")
    assert "1 students created" in done.text
    lms.go_offline()
    failed = browser.post(f"{tool}/dashboard/lti/roster", data={"csrf_token": token.group(1)},
                          timeout=30)
    assert "nothing was changed (the platform could not be reached)" in failed.text
