"""The least of an LTI 1.3 tool, to exercise the platform of the tests without the service:
a key of its own served at a JWKS URL, a login URL that sends the browser on to the platform's
authorization endpoint with a fresh ``state`` and ``nonce``, a launch URL that keeps what is
posted to it, and client assertions for the token endpoint. It checks nothing: checking is the
real tool's work, tested against the platform elsewhere.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlencode

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.lti.claims import DROP
from tests.lti.keys import JwksServer, KeyPair
from tests.lti.oauth import ToolRegistration
from tests.lti.serving import serve_in_thread

CLIENT_ID = "grader-client"
DEPLOYMENT = "deployment-1"


class FakeTool:
    """The least of a tool: ``/login`` sends the browser to the platform's authorization
    endpoint with a fresh state and nonce, ``/launch`` keeps the form posted to it."""

    def __init__(self, key: KeyPair) -> None:
        self.key, self.platform_auth = key, ""
        self.logins: list[dict[str, str]] = []
        self.launches: list[dict[str, str]] = []
        self.state = self.nonce = ""
        self.jwks = JwksServer([key])
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.base = f"http://127.0.0.1:{self._server.server_port}"

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path == "/login":
            self.logins.append(request.values.to_dict())
            self.state, self.nonce = uuid.uuid4().hex, uuid.uuid4().hex
            asked = {"scope": "openid", "response_type": "id_token",
                     "response_mode": "form_post", "prompt": "none",
                     "client_id": request.values["client_id"],
                     "redirect_uri": f"{self.base}/launch",
                     "login_hint": request.values["login_hint"],
                     "lti_message_hint": request.values["lti_message_hint"],
                     "state": self.state, "nonce": self.nonce}
            response = Response(status=302,
                                headers={"Location": f"{self.platform_auth}?{urlencode(asked)}"})
        elif request.path == "/launch" and request.method == "POST":
            self.launches.append(request.form.to_dict())
            response = Response("launched", 200)
        else:
            response = Response("not found", 404)
        return response(environ, start_response)

    def registration(self) -> ToolRegistration:
        return ToolRegistration(CLIENT_ID, (DEPLOYMENT, "deployment-2"), f"{self.base}/login",
                                (f"{self.base}/launch",), self.jwks.url, f"{self.base}/launch",
                                f"{self.base}/launch")

    def assertion(self, token_url: str, **changes: Any) -> str:
        """A client assertion for ``token_url`` (``changes`` replace claims, ``key`` signs)."""
        key = changes.pop("key", self.key)
        now = int(time.time())
        found = {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": token_url, "iat": now,
                 "exp": now + 300, "jti": uuid.uuid4().hex, **changes}
        return key.sign({name: value for name, value in found.items() if value is not DROP})

    def __enter__(self) -> FakeTool:
        self.jwks.__enter__()
        serve_in_thread(self._server, name="lti-fake-tool")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.jwks.__exit__(None, None, None)
