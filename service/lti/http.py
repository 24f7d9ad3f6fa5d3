"""The HTTP client the tool talks to platforms with (key sets, tokens, Names and Roles): a
``requests`` session whose every request has a time limit, so that a platform that hangs
holds a launch or a sync for seconds, not forever."""

from __future__ import annotations

from typing import Any

import requests
from pylti1p3.service_connector import REQUESTS_USER_AGENT

#: Seconds to connect and to wait for each read.
TIMEOUT = (5.0, 10.0)


class TimeoutSession(requests.Session):
    """A session that gives every request :data:`TIMEOUT` unless the caller gives one."""

    def request(self, method: str | bytes, url: str | bytes,
                *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return super().request(method, url, *args, **kwargs)


def timeout_session() -> TimeoutSession:
    session = TimeoutSession()
    session.headers["User-Agent"] = REQUESTS_USER_AGENT
    return session
