"""The LTI 1.3 platform of the tests (:mod:`tests.lti`) on its own, without the service: its
launches verify with its key set and carry every claim, and it refuses what a real LMS refuses
(authorization requests, client assertions, service calls and deep-linking responses). The tool
side is played by :class:`tests.lti.fake_tool.FakeTool`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import requests

from tests.lti import (
    DROP,
    JWT_BEARER,
    KeyPair,
    MessageType,
    Platform,
    ResourceLink,
    Role,
    Scope,
    ToolRegistration,
    User,
    follow_forms,
)
from tests.lti import claims as c
from tests.lti.fake_tool import CLIENT_ID, DEPLOYMENT, FakeTool

ALICE = User("alice-sub", "Alice", "Liddell", "alice@example.org")
BOB = User("bob-sub", "Bob", "Builder", "bob@example.org")
TEACHER = User("teacher-sub", "Ada", "Lovelace", "ada@example.org")


@pytest.fixture(scope="module")
def tool_key() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture
def tool(tool_key: KeyPair) -> Iterator[FakeTool]:
    with FakeTool(tool_key) as fake:
        yield fake


@pytest.fixture
def lms(tool: FakeTool) -> Iterator[Platform]:
    with Platform() as platform:
        tool.platform_auth = platform.auth_url
        platform.register_tool(tool.registration())
        yield platform
        assert platform.errors == []


def launch(lms: Platform, url: str) -> requests.Response:
    """Open ``url`` in a browser without JS (the forms submitted as the script would)."""
    with requests.Session() as browser:
        return follow_forms(browser, browser.get(url, timeout=30))


def verified(lms: Platform, id_token: str) -> dict[str, Any]:
    key = jwt.PyJWKClient(lms.jwks_url).get_signing_key_from_jwt(id_token)
    return jwt.decode(id_token, key.key, algorithms=["RS256"], audience=CLIENT_ID,
                      issuer=lms.issuer)


def token_for(lms: Platform, tool: FakeTool, *scopes: str) -> str:
    answer = requests.post(lms.token_url, data={
        "grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
        "client_assertion": tool.assertion(lms.token_url), "scope": " ".join(scopes)}, timeout=10)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def score(user: str = ALICE.sub, given: float = 7, *, at: datetime | None = None) -> dict[str, Any]:
    return {"userId": user, "scoreGiven": given, "scoreMaximum": 10,
            "activityProgress": "Completed", "gradingProgress": "FullyGraded",
            "timestamp": (at or datetime.now(UTC)).isoformat(), "comment": "see the feedback"}


# --- launches ---------------------------------------------------------------------------------

@pytest.mark.parametrize("login_method", ["POST", "GET"])
def test_a_launch_reaches_the_tool_signed_and_with_every_claim(
        lms: Platform, tool: FakeTool, login_method: str) -> None:
    lms.login_method = login_method
    link = lms.add_resource_link(ResourceLink("rl-1", "CNN", {"exercise": "chap06_cnn"}))
    item = lms.add_line_item("CNN", 10, resource_link=link.id)
    answer = launch(lms, lms.launch_url(ALICE, [Role.LEARNER], link, custom={"extra": "1"}))

    assert answer.text == "launched"
    login = tool.logins[-1]
    assert login == {"iss": lms.issuer, "login_hint": ALICE.sub, "target_link_uri": tool.base + "/launch",
                     "lti_message_hint": login["lti_message_hint"], "client_id": CLIENT_ID,
                     "lti_deployment_id": DEPLOYMENT}
    posted = tool.launches[-1]
    assert posted["state"] == tool.state
    found = verified(lms, posted["id_token"])
    assert jwt.get_unverified_header(posted["id_token"])["kid"] == lms.key.kid
    assert found["nonce"] == tool.nonce
    assert (found["sub"], found["name"], found["email"]) == (ALICE.sub, "Alice Liddell", ALICE.email)
    assert found["azp"] == CLIENT_ID and found["exp"] > time.time()
    assert found[c.MESSAGE_TYPE] == "LtiResourceLinkRequest"
    assert found[c.VERSION] == "1.3.0"
    assert found[c.DEPLOYMENT_ID] == DEPLOYMENT
    assert found[c.TARGET_LINK_URI] == tool.base + "/launch"
    assert found[c.RESOURCE_LINK] == {"id": "rl-1", "title": "CNN"}
    assert found[c.ROLES] == [Role.LEARNER]
    assert found[c.CONTEXT]["id"] == lms.context.id
    assert found[c.CUSTOM] == {"exercise": "chap06_cnn", "extra": "1"}
    assert found[c.AGS_ENDPOINT] == {"scope": [Scope.LINEITEM, Scope.LINEITEM_READONLY,
                                               Scope.RESULT_READONLY, Scope.SCORE],
                                     "lineitems": lms.lineitems_url, "lineitem": item.url}
    assert found[c.NRPS]["context_memberships_url"] == lms.memberships_url
    assert lms.launch_posts[-1].id_token == posted["id_token"]
    assert ALICE.sub in lms.gradebook.members


def test_a_deep_linking_request_carries_its_settings(lms: Platform, tool: FakeTool) -> None:
    launch(lms, lms.launch_url(TEACHER, [Role.INSTRUCTOR],
                               message_type=MessageType.DEEP_LINKING))
    found = verified(lms, tool.launches[-1]["id_token"])
    assert found[c.MESSAGE_TYPE] == "LtiDeepLinkingRequest"
    assert c.RESOURCE_LINK not in found
    settings = found[c.DEEP_LINKING_SETTINGS]
    assert settings["deep_link_return_url"].startswith(lms.issuer + "/deep_links/")
    assert settings["accept_types"] == ["ltiResourceLink"]


@pytest.mark.parametrize(("change", "refusal"), [
    ({"redirect_uri": "http://127.0.0.1:1/elsewhere"}, "is not registered"),
    ({"client_id": "someone-else"}, "unknown client_id"),
    ({"response_mode": "query"}, "response_mode"),
    ({"scope": "profile"}, "scope"),
    ({"prompt": "login"}, "prompt"),
    ({"nonce": ""}, "nonce is required"),
    ({"state": ""}, "state is required"),
    ({"login_hint": BOB.sub}, "login_hint"),
    ({"lti_message_hint": "nothing"}, "names no launch"),
])
def test_the_authorization_endpoint_refuses_a_wrong_request(
        lms: Platform, tool: FakeTool, change: dict[str, str], refusal: str) -> None:
    start = lms.launch_url(ALICE, [Role.LEARNER], "rl-1")
    fields = {"scope": "openid", "response_type": "id_token", "response_mode": "form_post",
              "prompt": "none", "client_id": CLIENT_ID, "redirect_uri": tool.base + "/launch",
              "login_hint": ALICE.sub, "state": "s", "nonce": "n",
              "lti_message_hint": start.rsplit("/", 1)[1], **change}
    with requests.Session() as browser:
        assert browser.get(start, timeout=10).status_code == 200  # logged in to the platform
        answer = browser.get(lms.auth_url, params=fields, timeout=10)
    assert answer.status_code == 400, answer.text
    assert refusal in answer.text
    assert lms.launch_posts == []


def test_the_authorization_endpoint_refuses_a_browser_not_logged_in(
        lms: Platform, tool: FakeTool) -> None:
    start = lms.launch_url(ALICE, [Role.LEARNER], "rl-1")
    with requests.Session() as browser:
        login = browser.get(start, timeout=10)
    with requests.Session() as other_browser:
        answer = follow_forms(other_browser, other_browser.post(
            tool.base + "/login", data=_login_fields(login.text), timeout=10))
    assert answer.status_code == 400 and "not logged in" in answer.text
    assert tool.launches == []


def _login_fields(page: str) -> dict[str, str]:
    return dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page))


def test_overrides_and_another_key_sign_what_a_forger_would(lms: Platform) -> None:
    forger = KeyPair(lms.key.kid, KeyPair.generate().private_key)
    plan = lms.plan_launch(ALICE, [Role.LEARNER], "rl-1", signing_key=forger,
                           claim_overrides={"aud": "another-tool", c.VERSION: "1.1.0",
                                            c.DEPLOYMENT_ID: DROP})
    token = lms.id_token(plan, "nonce-1")
    with pytest.raises(jwt.InvalidSignatureError):
        verified(lms, token)
    found = jwt.decode(token, options={"verify_signature": False})
    assert found["aud"] == "another-tool" and found[c.VERSION] == "1.1.0"
    assert c.DEPLOYMENT_ID not in found and found["nonce"] == "nonce-1"


def test_the_service_tool_registration_and_options(lms: Platform) -> None:
    tool = ToolRegistration.at("http://127.0.0.1:5000", "grader", ("d1", "d2"))
    assert (tool.login_url, tool.redirect_uris, tool.jwks_url) == (
        "http://127.0.0.1:5000/lti/login", ("http://127.0.0.1:5000/lti/launch",),
        "http://127.0.0.1:5000/lti/jwks")
    lms.register_tool(tool)
    assert lms.registration_options("d2") == [
        "--issuer", lms.issuer, "--client-id", "grader", "--deployment-id", "d2",
        "--auth-login-url", lms.auth_url, "--auth-token-url", lms.token_url,
        "--key-set-url", lms.jwks_url]


def test_the_key_set_follows_rotation(lms: Platform) -> None:
    old = lms.key
    new = lms.rotate_key()
    kids = [key["kid"] for key in requests.get(lms.jwks_url, timeout=10).json()["keys"]]
    assert kids == [old.kid, new.kid]
    lms.rotate_key(keep_old=False)
    assert [key["kid"] for key in requests.get(lms.jwks_url, timeout=10).json()["keys"]] == [lms.key.kid]


# --- the token endpoint -----------------------------------------------------------------------

def _ask_token(lms: Platform, assertion: str, **changes: str) -> requests.Response:
    form = {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion, "scope": f"{Scope.SCORE} {Scope.LINEITEM}", **changes}
    return requests.post(lms.token_url, data=form, timeout=10)


def test_a_token_is_granted_for_an_assertion_signed_by_a_published_key(
        lms: Platform, tool: FakeTool) -> None:
    answer = _ask_token(lms, tool.assertion(lms.token_url),
                        scope=f"{Scope.SCORE} https://example.org/unknown-scope")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["scope"] == Scope.SCORE
    assert 3500 < body["expires_in"] <= 3600
    assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("changes", "status", "error"), [
    ({"key": "other"}, 401, "invalid_client"),
    ({"key": "forged"}, 401, "invalid_client"),
    ({"aud": "http://127.0.0.1:1/token"}, 401, "invalid_client"),
    (c.expired(), 401, "invalid_client"),
    ({"iss": "someone-else"}, 401, "invalid_client"),
    ({"sub": "someone-else"}, 401, "invalid_client"),
    ({"jti": DROP}, 401, "invalid_client"),
    ({"exp": DROP}, 401, "invalid_client"),
])
def test_the_token_endpoint_refuses_a_bad_assertion(
        lms: Platform, tool: FakeTool, changes: dict[str, Any], status: int, error: str) -> None:
    if changes.get("key") == "other":
        changes["key"] = KeyPair.generate()
    elif changes.get("key") == "forged":  # another key under the published kid
        changes["key"] = KeyPair(tool.key.kid, KeyPair.generate().private_key)
    answer = _ask_token(lms, tool.assertion(lms.token_url, **changes))
    assert (answer.status_code, answer.json()["error"]) == (status, error), answer.text


def test_the_token_endpoint_refuses_a_replayed_assertion(lms: Platform, tool: FakeTool) -> None:
    assertion = tool.assertion(lms.token_url)
    assert _ask_token(lms, assertion).status_code == 200
    again = _ask_token(lms, assertion)
    assert again.status_code == 401 and "already used" in again.json()["error_description"]


@pytest.mark.parametrize(("form", "error"), [
    ({"grant_type": "password"}, "unsupported_grant_type"),
    ({"client_assertion_type": "urn:other"}, "invalid_request"),
    ({"scope": ""}, "invalid_request"),
    ({"scope": "https://example.org/unknown-scope"}, "invalid_scope"),
])
def test_the_token_endpoint_refuses_a_wrong_request(
        lms: Platform, tool: FakeTool, form: dict[str, str], error: str) -> None:
    answer = _ask_token(lms, tool.assertion(lms.token_url), **form)
    assert (answer.status_code, answer.json()["error"]) == (400, error)


def test_a_token_holds_only_the_scopes_the_tool_was_registered_for(
        lms: Platform, tool: FakeTool) -> None:
    lms.register_tool(ToolRegistration(**{**tool.registration().__dict__,
                                          "scopes": frozenset({Scope.LINEITEM_READONLY})}))
    answer = _ask_token(lms, tool.assertion(lms.token_url))
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_scope")


# --- Assignment and Grade Services ------------------------------------------------------------

def _post_score(lms: Platform, line_item: str, token: str | None, body: dict[str, Any], *,
                content_type: str = c.MediaType.SCORE) -> requests.Response:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(f"{line_item}/scores", json=body, headers=headers, timeout=10)


def test_a_score_needs_a_token_with_the_score_scope(lms: Platform, tool: FakeTool) -> None:
    lms.enrol(ALICE, [Role.LEARNER])
    item = lms.add_line_item("CNN", 10)
    refused = _post_score(lms, item.url, None, score())
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert _post_score(lms, item.url, "made-up", score()).status_code == 401
    readonly = token_for(lms, tool, Scope.LINEITEM_READONLY, Scope.RESULT_READONLY)
    assert _post_score(lms, item.url, readonly, score()).status_code == 403
    assert lms.gradebook.received == []

    token = token_for(lms, tool, Scope.SCORE, Scope.RESULT_READONLY)
    assert _post_score(lms, item.url, token, score(),
                       content_type="application/json").status_code == 415
    assert _post_score(lms, item.url, token, score(given=7)).status_code == 200
    result = lms.gradebook.result(item.url, ALICE.sub)
    assert result is not None and result.score_given == 7
    results = requests.get(f"{item.url}/results", headers={"Authorization": f"Bearer {token}"},
                           timeout=10)
    assert results.headers["Content-Type"] == c.MediaType.RESULTS
    assert results.json() == [{"id": f"{item.url}/results/{ALICE.sub}", "scoreOf": item.url,
                               "userId": ALICE.sub, "resultScore": 7, "resultMaximum": 10,
                               "comment": "see the feedback"}]
    lms.tokens.expire_all()
    assert _post_score(lms, item.url, token, score()).status_code == 401


@pytest.mark.parametrize(("change", "status"), [
    ({"timestamp": "yesterday"}, 400),
    ({"timestamp": "2026-01-01T10:00:00"}, 400),  # no offset
    ({"activityProgress": "Done"}, 400),
    ({"gradingProgress": DROP}, 400),
    ({"scoreGiven": -1}, 400),
    ({"scoreMaximum": DROP}, 400),
    ({"userId": BOB.sub}, 422),  # not in the course
])
def test_a_malformed_score_is_refused(lms: Platform, tool: FakeTool, change: dict[str, Any],
                                      status: int) -> None:
    lms.enrol(ALICE, [Role.LEARNER])
    item = lms.add_line_item("CNN", 10)
    body = {name: value for name, value in {**score(), **change}.items() if value is not DROP}
    answer = _post_score(lms, item.url, token_for(lms, tool, Scope.SCORE), body)
    assert answer.status_code == status, answer.text
    assert lms.gradebook.received == []


def test_a_stale_score_does_not_replace_the_result(lms: Platform, tool: FakeTool) -> None:
    lms.enrol(ALICE, [Role.LEARNER])
    item = lms.add_line_item("CNN", 10)
    token = token_for(lms, tool, Scope.SCORE)
    now = datetime.now(UTC)
    assert _post_score(lms, item.url, token, score(given=9, at=now)).status_code == 200
    assert _post_score(lms, item.url, token, score(given=3, at=now - timedelta(minutes=1))
                       ).status_code == 200
    lms.gradebook.stale_scores = "conflict"
    assert _post_score(lms, item.url, token, score(given=4, at=now)).status_code == 409
    assert [entry.applied for entry in lms.gradebook.received] == [True, False, False]
    assert lms.wait_for_result(item, ALICE.sub, timeout=1).score_given == 9
    with pytest.raises(AssertionError, match="no score 4"):
        lms.wait_for_result(item.url, ALICE.sub, timeout=0.3, given=4)


def test_line_items_are_listed_created_and_read(lms: Platform, tool: FakeTool) -> None:
    lms.add_line_item("CNN", 10, resource_link="rl-1", resource_id="chap06_cnn")
    readonly = {"Authorization": f"Bearer {token_for(lms, tool, Scope.LINEITEM_READONLY)}"}
    listed = requests.get(lms.lineitems_url, headers=readonly, timeout=10)
    assert listed.headers["Content-Type"] == c.MediaType.LINEITEMS
    assert [item["resourceId"] for item in listed.json()] == ["chap06_cnn"]
    assert requests.get(lms.lineitems_url, params={"resource_link_id": "other"},
                        headers=readonly, timeout=10).json() == []
    new = {"label": "MLP", "scoreMaximum": 5, "resourceId": "chap05_mlp"}
    assert requests.post(lms.lineitems_url, json=new, headers={
        **readonly, "Content-Type": c.MediaType.LINEITEM}, timeout=10).status_code == 403

    manage = {"Authorization": f"Bearer {token_for(lms, tool, Scope.LINEITEM)}",
              "Content-Type": c.MediaType.LINEITEM}
    assert requests.post(lms.lineitems_url, json={"label": "MLP"}, headers=manage,
                         timeout=10).status_code == 400
    made = requests.post(lms.lineitems_url, json=new, headers=manage, timeout=10)
    assert made.status_code == 201
    assert requests.get(made.json()["id"], headers=readonly, timeout=10).json() == {
        "id": made.json()["id"], "label": "MLP", "scoreMaximum": 5, "resourceId": "chap05_mlp"}


# --- Names and Role Provisioning --------------------------------------------------------------

def test_memberships_list_the_course_with_roles(lms: Platform, tool: FakeTool) -> None:
    lms.enrol(ALICE, [Role.LEARNER])
    lms.enrol(TEACHER, [Role.INSTRUCTOR])
    headers = {"Authorization": f"Bearer {token_for(lms, tool, Scope.MEMBERSHIPS)}"}
    answer = requests.get(lms.memberships_url, headers=headers, timeout=10)
    assert answer.headers["Content-Type"] == c.MediaType.MEMBERSHIPS
    body = answer.json()
    assert body["context"]["id"] == lms.context.id
    assert {member["user_id"]: member["roles"] for member in body["members"]} == {
        ALICE.sub: [Role.LEARNER], TEACHER.sub: [Role.INSTRUCTOR]}
    assert body["members"][0] == {"status": "Active", "user_id": ALICE.sub,
                                  "roles": [Role.LEARNER], "name": "Alice Liddell",
                                  "given_name": "Alice", "family_name": "Liddell",
                                  "email": ALICE.email}
    learners = requests.get(lms.memberships_url, params={"role": Role.LEARNER},
                            headers=headers, timeout=10).json()["members"]
    assert [member["user_id"] for member in learners] == [ALICE.sub]
    scores_only = {"Authorization": f"Bearer {token_for(lms, tool, Scope.SCORE)}"}
    assert requests.get(lms.memberships_url, headers=scores_only, timeout=10).status_code == 403


# --- outages ----------------------------------------------------------------------------------

def test_the_platform_goes_down_and_comes_back(lms: Platform, tool: FakeTool) -> None:
    lms.enrol(ALICE, [Role.LEARNER])
    item = lms.add_line_item("CNN", 10)
    token = token_for(lms, tool, Scope.SCORE)

    lms.set_outage("token", "scores")
    assert _post_score(lms, item.url, token, score()).status_code == 503
    assert _ask_token(lms, tool.assertion(lms.token_url)).status_code == 503
    assert requests.get(lms.jwks_url, timeout=10).status_code == 200
    lms.clear_outage()
    assert _post_score(lms, item.url, token, score()).status_code == 200

    address = lms.issuer
    with requests.Session() as client:  # a kept-alive connection must not outlive the port
        posted = client.post(f"{item.url}/scores", json=score(), timeout=10, headers={
            "Content-Type": c.MediaType.SCORE, "Authorization": f"Bearer {token}"})
        assert posted.status_code == 200
        lms.go_offline()
        with pytest.raises(requests.ConnectionError):
            client.get(lms.jwks_url, timeout=10)
    with pytest.raises(requests.ConnectionError):
        _post_score(lms, item.url, token, score())
    lms.go_online()
    assert lms.issuer == address
    assert _post_score(lms, item.url, token, score()).status_code == 200
    assert [request.status for request in lms.requests_to("scores")] == [503, 200, 200, 200]
    assert len(lms.gradebook.received) == 3


def test_a_slow_platform_answers_late(lms: Platform, tool: FakeTool) -> None:
    lms.set_outage("token", status=0, delay=1.5)
    started = time.monotonic()
    token_for(lms, tool, Scope.SCORE)
    assert time.monotonic() - started >= 1.5


# --- deep linking -----------------------------------------------------------------------------

def _deep_link_answer(lms: Platform, tool: FakeTool, **changes: Any) -> tuple[str, str]:
    """The return URL of a deep-linking launch and the tool's signed answer to it."""
    launch(lms, lms.launch_url(TEACHER, [Role.INSTRUCTOR], message_type=MessageType.DEEP_LINKING))
    request = verified(lms, tool.launches[-1]["id_token"])
    settings = request[c.DEEP_LINKING_SETTINGS]
    key = changes.pop("key", tool.key)
    now = int(time.time())
    claims = {"iss": CLIENT_ID, "aud": lms.issuer, "iat": now, "exp": now + 300,
              "nonce": uuid.uuid4().hex, c.MESSAGE_TYPE: "LtiDeepLinkingResponse",
              c.VERSION: "1.3.0", c.DEPLOYMENT_ID: request[c.DEPLOYMENT_ID],
              c.DL_DATA: settings["data"],
              c.CONTENT_ITEMS: [{"type": "ltiResourceLink", "title": "CNN",
                                 "custom": {"exercise": "chap06_cnn"},
                                 "lineItem": {"scoreMaximum": 10, "label": "CNN",
                                              "resourceId": "chap06_cnn"}}], **changes}
    return settings["deep_link_return_url"], key.sign(
        {name: value for name, value in claims.items() if value is not DROP})


def test_a_deep_linking_response_places_a_link_with_its_line_item(
        lms: Platform, tool: FakeTool) -> None:
    url, answer = _deep_link_answer(lms, tool)
    page = requests.post(url, data={"JWT": answer}, timeout=10)
    assert page.status_code == 200 and "1 item(s) added" in page.text
    result = lms.deep_links[-1]
    link, item = result.links[0], result.line_items[0]
    assert link.custom == {"exercise": "chap06_cnn"}
    assert (item.score_maximum, item.resource_id, item.resource_link_id) == (10, "chap06_cnn", link.id)

    launch(lms, lms.launch_url(ALICE, [Role.LEARNER], link.id))
    found = verified(lms, tool.launches[-1]["id_token"])
    assert found[c.CUSTOM] == {"exercise": "chap06_cnn"}
    assert found[c.AGS_ENDPOINT]["lineitem"] == item.url

    again = requests.post(url, data={"JWT": answer}, timeout=10)
    assert again.status_code == 400 and "already used" in again.text


@pytest.mark.parametrize(("changes", "refusal"), [
    ({"key": "other"}, "no key"),
    ({"aud": "http://127.0.0.1:1"}, "audience"),
    ({"iss": "someone-else"}, "issuer"),
    (c.expired(), "expired"),
    ({"nonce": DROP}, "nonce"),
    ({c.MESSAGE_TYPE: "LtiResourceLinkRequest"}, "message_type"),
    ({c.DEPLOYMENT_ID: "deployment-2"}, "deployment_id"),
    ({c.DL_DATA: "forged"}, "claim/data"),
    ({c.CONTENT_ITEMS: [{"type": "html", "html": "<p>"}]}, "accepted"),
    ({c.CONTENT_ITEMS: [{"type": "ltiResourceLink", "lineItem": {"label": "CNN"}}]},
     "scoremaximum"),
    ({c.CONTENT_ITEMS: [{"type": "ltiResourceLink", "custom": {"points": 10}}]}, "custom"),
])
def test_a_wrong_deep_linking_response_is_refused(
        lms: Platform, tool: FakeTool, changes: dict[str, Any], refusal: str) -> None:
    if changes.get("key") == "other":
        changes["key"] = KeyPair.generate()
    url, answer = _deep_link_answer(lms, tool, **changes)
    page = requests.post(url, data={"JWT": answer}, timeout=10)
    assert page.status_code == 400 and refusal in page.text.lower(), page.text
    assert lms.deep_links == [] and lms.gradebook.line_items == {}
