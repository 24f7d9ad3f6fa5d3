"""The LTI 1.3 tool's first part, on SQLite and PostgreSQL: platforms registered from the command
line (``service.lti_commands``), read back through pylti1p3's tool configuration
(``service.lti.tool_conf``), the tool's keys at ``/lti/jwks`` through a rotation and a
retirement, the settings an LMS administrator pastes (``/dashboard/lti``, ``/lti/canvas.json``),
used launch nonces, and the migration both ways. A private key never reaches a response, a
command's output or a log."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from flask import Flask
from flask_migrate import downgrade, upgrade
from pylti1p3.registration import Registration
from pylti1p3.service_connector import ServiceConnector
from pylti1p3.session import SessionService
from sqlalchemy import func, inspect, select, update

from service.domain.instructors import change_password, create_instructor
from service.domain.lti_keys import signing_key
from service.domain.lti_nonces import use_nonce
from service.extensions import db
from service.lti.launch_storage import DatabaseLaunchStorage
from service.lti.tool_conf import DatabaseToolConf, UnknownPlatform
from service.models import LtiDeployment, LtiKey, LtiLaunchData, LtiNonce, LtiPlatform
from service.settings import SettingsError, load_settings
from tests.service.service_support import cli_ok as ok
from tests.service.service_support import cli_refused as refused
from tests.service.service_support import in_session

MOODLE = "https://moodle.example.org"
MOODLE_URLS = ["--auth-login-url", f"{MOODLE}/mod/lti/auth.php",
               "--auth-token-url", f"{MOODLE}/mod/lti/token.php",
               "--key-set-url", f"{MOODLE}/mod/lti/certs.php"]
LOCAL = "http://127.0.0.1:8765"
PASSWORD = "a-long-enough-password"
BEFORE = "e5c1a9b7d203"



def register_moodle(app: Flask, *deployments: str, client: str = "tool-1") -> str:
    flags = [arg for d in deployments for arg in ("--deployment-id", d)]
    return ok(app, "lti", "register", "--issuer", MOODLE, "--client-id", client, *flags,
              *MOODLE_URLS)


def listed(app: Flask) -> list[dict[str, Any]]:
    return json.loads(ok(app, "lti", "list", "--json"))


def count(app: Flask, model: type) -> int:
    return in_session(app, lambda s: s.execute(select(func.count()).select_from(model))
                      .scalar_one())


def private_pems(app: Flask) -> list[str]:
    return in_session(app, lambda s: [k.private_pem for k in s.scalars(select(LtiKey))
                                      if k.private_pem])


def pem_body(pem: str) -> str:
    """The base64 of a PEM without its armour (what a leak would hold, whatever its line
    breaks)."""
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


# --- register, list, remove -------------------------------------------------------------------


def test_register_list_and_rerun(app: Flask):
    out = register_moodle(app, "1", "2")
    assert out.startswith(f"registered {MOODLE} client id tool-1: deployments 1, 2")
    expected = {"issuer": MOODLE, "client_id": "tool-1",
                "auth_login_url": f"{MOODLE}/mod/lti/auth.php",
                "auth_token_url": f"{MOODLE}/mod/lti/token.php",
                "key_set_url": f"{MOODLE}/mod/lti/certs.php", "audience": None,
                "deployment_ids": ["1", "2"]}
    assert listed(app) == [expected]

    # the same command again changes nothing
    assert "added: none" in register_moodle(app, "1", "2")
    assert listed(app) == [expected]
    assert (count(app, LtiPlatform), count(app, LtiDeployment)) == (1, 2)

    # a new deployment and a moved key set URL
    ok(app, "lti", "register", "--issuer", MOODLE, "--client-id", "tool-1",
       "--deployment-id", "3", *MOODLE_URLS[:4], "--key-set-url", f"{MOODLE}/keys")
    [moved] = listed(app)
    assert moved["deployment_ids"] == ["1", "2", "3"]
    assert moved["key_set_url"] == f"{MOODLE}/keys"

    # a second client id of the issuer, a platform on this machine over http
    register_moodle(app, "9", client="tool-2")
    ok(app, "lti", "register", "--issuer", LOCAL, "--client-id", "c", "--deployment-id", "d",
       "--auth-login-url", f"{LOCAL}/auth", "--auth-token-url", f"{LOCAL}/token",
       "--key-set-url", f"{LOCAL}/jwks", "--audience", f"{LOCAL}/aud")
    assert [(p["issuer"], p["client_id"]) for p in listed(app)] == [
        (LOCAL, "c"), (MOODLE, "tool-1"), (MOODLE, "tool-2")]
    text = ok(app, "lti", "list")
    assert f"{MOODLE} client_id=tool-1 deployments=1,2,3" in text
    assert f"audience={LOCAL}/aud" in text


@pytest.mark.parametrize(("option", "value", "said"), [
    ("--issuer", "http://moodle.example.org", "must use https://"),
    ("--auth-login-url", "ftp://moodle.example.org/auth", "not an absolute https:// URL"),
    ("--key-set-url", "/mod/lti/certs.php", "not an absolute https:// URL"),
    ("--auth-token-url", "https://moodle.example.org/token#x", "#fragment"),
    ("--client-id", " ", "must be 1 to 255 characters"),
])
def test_register_refuses_bad_values_and_writes_nothing(app: Flask, option: str, value: str,
                                                        said: str):
    args = {"--issuer": MOODLE, "--client-id": "tool-1", "--deployment-id": "1",
            "--auth-login-url": f"{MOODLE}/auth", "--auth-token-url": f"{MOODLE}/token",
            "--key-set-url": f"{MOODLE}/certs", option: value}
    error = refused(app, "lti", "register", *[x for pair in args.items() for x in pair])
    assert f"Error: {option}: " in error and said in error
    assert count(app, LtiPlatform) == 0


def test_a_deployment_id_belongs_to_one_client_of_an_issuer(app: Flask):
    register_moodle(app, "1")
    error = refused(app, "lti", "register", "--issuer", MOODLE, "--client-id", "tool-2",
                    "--deployment-id", "5", "--deployment-id", "1", *MOODLE_URLS)
    assert "already holds '1' (client id 'tool-1')" in error
    assert [p["client_id"] for p in listed(app)] == ["tool-1"]


def test_remove_deployments_clients_and_issuers(app: Flask):
    register_moodle(app, "1", "2")
    register_moodle(app, "3", client="tool-2")
    assert "is not registered (registered: https://moodle.example.org)" in refused(
        app, "lti", "remove", "--issuer", "https://canvas.instructure.com")
    assert "has no client id 'nope'" in refused(app, "lti", "remove", "--issuer", MOODLE,
                                                 "--client-id", "nope")
    assert "has no deployment '7'" in refused(app, "lti", "remove", "--issuer", MOODLE,
                                              "--deployment-id", "2", "--deployment-id", "7")
    assert count(app, LtiDeployment) == 3

    assert ok(app, "lti", "remove", "--issuer", MOODLE, "--deployment-id", "2") == (
        f"removed deployment 2 of {MOODLE} (client id tool-1)\n")
    assert [p["deployment_ids"] for p in listed(app)] == [["1"], ["3"]]
    ok(app, "lti", "remove", "--issuer", MOODLE, "--client-id", "tool-2")
    assert [p["client_id"] for p in listed(app)] == ["tool-1"]
    ok(app, "lti", "remove", "--issuer", MOODLE)
    assert listed(app) == []
    assert (count(app, LtiPlatform), count(app, LtiDeployment)) == (0, 0)
    assert ok(app, "lti", "list") == "no platform registered\n"


# --- pylti1p3's tool configuration ------------------------------------------------------------


def verify_rs256(token: str, jwk: dict[str, Any]) -> dict[str, Any]:
    """The claims of ``token`` once its RS256 signature is checked against ``jwk`` (by hand,
    so the check is not the signer's own library)."""

    def unb64(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    header, body, signature = token.split(".")
    assert json.loads(unb64(header))["kid"] == jwk["kid"]
    public = rsa.RSAPublicNumbers(int.from_bytes(unb64(jwk["e"]), "big"),
                                  int.from_bytes(unb64(jwk["n"]), "big")).public_key()
    public.verify(unb64(signature), f"{header}.{body}".encode(), padding.PKCS1v15(),
                  hashes.SHA256())
    return json.loads(unb64(body))


def test_the_tool_conf_finds_what_was_registered(app: Flask):
    register_moodle(app, "1", "2")
    register_moodle(app, "3", client="tool-2")
    with app.app_context():
        conf = DatabaseToolConf(db.session)
        assert conf.check_iss_has_many_clients(MOODLE)
        reg = conf.find_registration_by_params(MOODLE, "tool-1")
        assert (reg.get_issuer(), reg.get_client_id()) == (MOODLE, "tool-1")
        assert reg.get_auth_login_url() == f"{MOODLE}/mod/lti/auth.php"
        assert reg.get_auth_token_url() == f"{MOODLE}/mod/lti/token.php"
        assert reg.get_key_set_url() == f"{MOODLE}/mod/lti/certs.php"
        assert reg.get_auth_audience() is None
        deployment = conf.find_deployment_by_params(MOODLE, "2", "tool-1")
        assert deployment is not None and deployment.get_deployment_id() == "2"
        assert conf.find_deployment_by_params(MOODLE, "3", "tool-1") is None  # tool-2's
        assert conf.find_deployment(MOODLE, "3") is not None
        assert conf.find_deployment(MOODLE, "4") is None
        assert conf.find_deployment("https://other.example.org", "1") is None

        # by issuer alone: only while the issuer has one client id
        with pytest.raises(UnknownPlatform):
            conf.find_registration_by_issuer(MOODLE)
        ok(app, "lti", "remove", "--issuer", MOODLE, "--client-id", "tool-2")
        assert conf.find_registration_by_issuer(MOODLE).get_client_id() == "tool-1"
        with pytest.raises(UnknownPlatform) as unknown:
            conf.find_registration_by_params(MOODLE, "tool-9")
        assert (unknown.value.issuer, unknown.value.client_id) == (MOODLE, "tool-9")

        # the registration signs with the published key, under its kid
        published = conf.get_jwks()["keys"]
        assert reg.get_kid() == published[0]["kid"]
        token = ServiceConnector(reg).encode_jwt({"iss": "tool-1", "aud": "x"},
                                                 reg.get_tool_private_key(),
                                                 {"kid": reg.get_kid()})
        assert verify_rs256(token, published[0]) == {"iss": "tool-1", "aud": "x"}
        assert "PRIVATE" not in repr(reg) and "PRIVATE" not in repr(signing_key(db.session))


# --- keys -------------------------------------------------------------------------------------


def test_jwks_serves_current_and_previous_keys_until_retired(app: Flask):
    client = app.test_client()
    assert count(app, LtiKey) == 0
    first = client.get("/lti/jwks")
    assert first.status_code == 200 and first.mimetype == "application/json"
    [key] = first.get_json()["keys"]  # made on first use
    assert (key["kty"], key["alg"], key["use"]) == ("RSA", "RS256", "sig")
    assert set(key) == {"kty", "n", "e", "kid", "alg", "use"}  # no private member (d, p, q...)
    assert client.get("/lti/jwks").get_json()["keys"] == [key]  # the same key next time

    rotated = ok(app, "lti", "rotate-key")
    keys = client.get("/lti/jwks").get_json()["keys"]
    assert [k["kid"] for k in keys][1:] == [key["kid"]] and keys[0]["kid"] in rotated
    with app.app_context():
        assert signing_key(db.session).kid == keys[0]["kid"]

    assert ok(app, "lti", "retire-keys") == "no key was replaced more than 7 days ago\n"
    assert len(client.get("/lti/jwks").get_json()["keys"]) == 2
    assert ok(app, "lti", "retire-keys", "--older-than", "0") == f"retired {key['kid']}\n"
    assert client.get("/lti/jwks").get_json()["keys"] == [keys[0]]
    assert len(private_pems(app)) == 1  # the retired key's private half is erased
    states = ok(app, "lti", "keys").splitlines()
    assert states[0].startswith(keys[0]["kid"]) and states[0].endswith("signing")
    assert states[1].startswith(key["kid"]) and " retired " in states[1]


def test_a_private_key_never_reaches_a_response_an_output_or_a_log(make_app, caplog):
    caplog.set_level(logging.DEBUG)
    app = make_app(WTF_CSRF_ENABLED=False)
    outputs = [register_moodle(app, "1"), ok(app, "lti", "keys"), ok(app, "lti", "rotate-key"),
               ok(app, "lti", "list"), ok(app, "lti", "list", "--json"), ok(app, "lti", "keys")]
    client = staff_client(app)
    for path in ("/lti/jwks", "/lti/canvas.json", "/dashboard/lti"):
        response = client.get(path)
        assert response.status_code == 200, path
        outputs.append(response.get_data(as_text=True))
    pems = private_pems(app)
    assert len(pems) == 2
    for pem in pems:
        body = pem_body(pem)
        for text in [*outputs, caplog.text]:
            assert "PRIVATE KEY" not in text
            assert body not in text.replace("\n", "") and body[:64] not in text


# --- what the LMS administrator pastes --------------------------------------------------------


def staff_client(app: Flask) -> Any:
    with app.app_context():
        instructor, once = create_instructor("teacher")
        change_password(instructor, once, PASSWORD, PASSWORD)
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    login = client.post("/dashboard/login", data={"username": "teacher", "password": PASSWORD})
    assert login.status_code == 303
    return client


def test_the_configuration_page_needs_an_instructor(make_app):
    app = make_app(WTF_CSRF_ENABLED=False, PUBLIC_URL="https://grader.example.org")
    anonymous = app.test_client().get("/dashboard/lti")
    assert anonymous.status_code == 302 and "/dashboard/login" in anonymous.location

    register_moodle(app, "1", "2")
    client = staff_client(app)
    page = client.get("/dashboard/lti")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    for url in ("https://grader.example.org/lti/login", "https://grader.example.org/lti/launch",
                "https://grader.example.org/lti/jwks",
                "https://grader.example.org/lti/canvas.json",
                "https://purl.imsglobal.org/spec/lti-ags/scope/score",
                "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
                "Initiate login URL", "Content Selection URL", "exercise=chap06_cnn",
                MOODLE, "tool-1"):
        assert url in text, url
    assert "PUBLIC_URL" not in text  # set: no advice to set it
    ja = client.get("/dashboard/lti", headers={"Accept-Language": "ja"})
    assert "LMS 連携の設定" in ja.get_data(as_text=True)


def test_canvas_json_is_a_developer_key_configuration(make_app):
    app = make_app()
    body = app.test_client().get("/lti/canvas.json", base_url="https://grader.test").get_json()
    assert body["oidc_initiation_url"] == "https://grader.test/lti/login"
    assert body["target_link_uri"] == "https://grader.test/lti/launch"
    assert body["public_jwk_url"] == "https://grader.test/lti/jwks"
    assert set(body["scopes"]) == {
        "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
        "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
        "https://purl.imsglobal.org/spec/lti-ags/scope/score",
        "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"}
    [extension] = body["extensions"]
    assert extension["domain"] == "grader.test"
    assert extension["platform"] == "canvas.instructure.com"
    placements = extension["settings"]["placements"]
    assert {p["placement"] for p in placements} == {"link_selection", "assignment_selection"}
    assert {p["message_type"] for p in placements} == {"LtiDeepLinkingRequest"}
    assert body["title"]

    behind_proxy = make_app(PUBLIC_URL="https://grader.example.org/")
    body = behind_proxy.test_client().get("/lti/canvas.json").get_json()
    assert body["public_jwk_url"] == "https://grader.example.org/lti/jwks"


def test_public_url_setting():
    assert load_settings({"PUBLIC_URL": "https://g.example.org/"})["PUBLIC_URL"] == (
        "https://g.example.org")
    assert load_settings({})["PUBLIC_URL"] is None
    with pytest.raises(SettingsError, match="PUBLIC_URL"):
        load_settings({"PUBLIC_URL": "g.example.org"})


# --- nonces and the migration -----------------------------------------------------------------


def test_a_nonce_is_accepted_once_until_it_expires(app: Flask):
    now = dt.datetime(2026, 12, 5, 12, 0)
    later = now + dt.timedelta(hours=1)
    with app.app_context():
        assert use_nonce(db.session, MOODLE, "n-1", later, now=now)
        assert not use_nonce(db.session, MOODLE, "n-1", later, now=now)
        assert use_nonce(db.session, "https://canvas.instructure.com", "n-1", later, now=now)
        assert use_nonce(db.session, MOODLE, "n-2", later, now=now)
        # once the token expired the row goes (a replay then fails on exp)
        assert use_nonce(db.session, MOODLE, "n-3", later, now=later + dt.timedelta(minutes=1))
    assert count(app, LtiNonce) == 1


def storage(app: Flask, session_id: str | None) -> DatabaseLaunchStorage:
    store = DatabaseLaunchStorage(db.session)
    if session_id:
        store.set_session_id(session_id)
    return store


def test_launch_data_is_shared_by_processes_and_bound_to_the_browser(make_app):
    login, launch = make_app(), make_app()  # two processes on one database
    claims = {"sub": "u1", "https://purl.imsglobal.org/spec/lti/claim/roles": ["Learner"]}
    with login.app_context():
        service = SessionService(None)  # no request: only its storage is used
        service.set_data_storage(storage(login, "browser-1"))
        service.save_nonce("n-1")
        service.save_launch_data("launch-1", claims)
    with launch.app_context():
        service = SessionService(None)
        service.set_data_storage(storage(launch, "browser-1"))
        assert service.check_nonce("n-1")
        assert service.get_launch_data("launch-1") == claims
        other = SessionService(None)
        other.set_data_storage(storage(launch, "browser-2"))
        assert not other.check_nonce("n-1") and other.get_launch_data("launch-1") is None
        no_cookie = storage(launch, None)
        assert not no_cookie.check_value("lti1p3-nonce-n-1")

        store = storage(launch, "browser-1")
        store.set_value("short", True, exp=1)
        soon = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=5)
        short = select(func.count()).select_from(LtiLaunchData).where(
            LtiLaunchData.expires_at < soon)
        assert store.check_value("short") and db.session.execute(short).scalar_one() == 1
        db.session.execute(update(LtiLaunchData).where(LtiLaunchData.expires_at < soon)
                           .values(expires_at=soon - dt.timedelta(minutes=1)))
        db.session.commit()
        assert not store.check_value("short")  # expired: absent
        store.set_value("later", 1)  # a write removes the expired rows
        assert db.session.execute(short).scalar_one() == 0
        assert store.get_value("later") == 1
        # stored under hashes: no key (nor the browser's session id) in the table
        assert all(len(k) == 64 for (k,) in db.session.execute(select(LtiLaunchData.key_hash)))


def test_the_lti_migration_goes_both_ways(app: Flask):
    tables = {"lti_platforms", "lti_deployments", "lti_keys", "lti_nonces", "lti_launch_data"}
    with app.app_context():
        assert tables <= set(inspect(db.engine).get_table_names())
        downgrade(revision=BEFORE)
        assert not tables & set(inspect(db.engine).get_table_names())
        db.session.remove()
        upgrade()
        assert tables <= set(inspect(db.engine).get_table_names())


def test_a_key_pair_matches(app: Flask):
    """The published JWK is the public half of the stored private key."""
    with app.app_context():
        key = signing_key(db.session)
    private = serialization.load_pem_private_key(key.private_pem.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    numbers = private.public_key().public_numbers()
    token = ServiceConnector(Registration()).encode_jwt({"a": 1}, key.private_pem, {"kid": key.kid})
    assert verify_rs256(token, key.public_jwk) == {"a": 1}
    assert key.public_jwk["e"] == "AQAB" and numbers.e == 65537
