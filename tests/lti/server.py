"""The platform's HTTP front: a WSGI app served on 127.0.0.1 in a thread, which routes each
request to a handler, turns a :class:`~tests.lti.keys.Refused` into the answer an LMS gives
(an OAuth2 error body, or a page for a browser), records every request, and can be made to
fail: named endpoints answer 503 or late (:class:`Outage`), or the port is closed.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.lti.keys import Refused
from tests.lti.pages import message_page
from tests.lti.serving import serve_in_thread

#: ``handler(endpoint, request, arguments of the URL)``
Handler = Callable[[str, Request, Mapping[str, Any]], Response]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the platform answered."""

    at: float
    endpoint: str
    method: str
    path: str
    headers: dict[str, str]
    #: the form fields of a form post, else the body as text
    body: dict[str, str] | str
    status: int


@dataclass(frozen=True)
class Outage:
    """Endpoints that answer ``status`` (503 by default) after ``delay`` seconds; a status of
    0 answers normally, only late."""

    endpoints: frozenset[str]
    status: int = 503
    delay: float = 0.0


class _OneRequestPerConnection(WSGIRequestHandler):
    """HTTP/1.0: the connection is closed after each answer, so no kept-alive connection of a
    client outlives :meth:`Server.stop` (an LMS that is down refuses every request)."""

    protocol_version = "HTTP/1.0"


class Server:
    """Serves ``rules`` with ``handler``; ``browser_endpoints`` are pages a browser sees (a
    refusal is an HTML page there, an OAuth2 JSON error elsewhere)."""

    def __init__(self, rules: Map, handler: Handler, browser_endpoints: frozenset[str]) -> None:
        self.rules, self.handler, self.browser_endpoints = rules, handler, browser_endpoints
        self.outage: Outage | None = None
        self.port = 0
        self._server: BaseWSGIServer | None = None
        self._records: list[RecordedRequest] = []
        self._errors: list[str] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Serve on a free port (the first time) or on the port it had (after :meth:`stop`)."""
        self._server = make_server("127.0.0.1", self.port, self._wsgi, threaded=True,
                                   request_handler=_OneRequestPerConnection)
        self.port = self._server.server_port
        serve_in_thread(self._server, name=f"lti-platform-{self.port}")

    def stop(self) -> None:
        """Close the port (connections are refused until :meth:`start`)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def records(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    @property
    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        endpoint = "unknown"
        try:
            endpoint, args = self.rules.bind_to_environ(environ).match()
            response = self._outage(endpoint) or self.handler(endpoint, request, args)
        except Refused as refused:
            response = self._refusal(endpoint, refused)
        except HTTPException as error:  # a routing error: 404, 405
            response = error.get_response(environ)
        except Exception:
            with self._lock:
                self._errors.append(traceback.format_exc())
            response = Response("the platform failed", 500)
        self._record(endpoint, request, response.status_code)
        return response(environ, start_response)

    def _outage(self, endpoint: str) -> Response | None:
        outage = self.outage
        if outage is None or endpoint not in outage.endpoints:
            return None
        time.sleep(outage.delay)
        if not outage.status:
            return None
        return Response(json.dumps({"error": "temporarily_unavailable"}), outage.status,
                        content_type="application/json", headers={"Retry-After": "1"})

    def _refusal(self, endpoint: str, refused: Refused) -> Response:
        if endpoint in self.browser_endpoints:  # a page: no 401 challenge to a browser
            return Response(message_page("The platform refused", refused.description),
                            400 if refused.status == 401 else refused.status,
                            content_type="text/html; charset=utf-8")
        headers = {"Cache-Control": "no-store"}
        if refused.error in ("invalid_token", "insufficient_scope"):
            headers["WWW-Authenticate"] = f'Bearer error="{refused.error}"'
        return Response(json.dumps(refused.body()), refused.status, headers=headers,
                        content_type="application/json")

    def _record(self, endpoint: str, request: Request, status: int) -> None:
        body: dict[str, str] | str = (request.form.to_dict()
                                      if request.mimetype == "application/x-www-form-urlencoded"
                                      else request.get_data(as_text=True))
        with self._lock:
            self._records.append(RecordedRequest(
                time.time(), endpoint, request.method, request.full_path.rstrip("?"),
                dict(request.headers), body, status))
