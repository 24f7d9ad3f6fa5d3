"""Sending one score to a platform (LTI Assignment and Grade Services 2.0), through pylti1p3's
``ServiceConnector`` and ``AssignmentsGradesService``, signed with the registration of
``service.lti.tool_conf``.

What pylti1p3 leaves to us, done here:

- **timeouts**: its ``requests`` calls have none; every call here has :data:`TIMEOUT` seconds,
  so a platform that is slow holds a sender for seconds, never for ever;
- **tokens that expire**: it keeps an access token per scope set for the life of its
  connector. :class:`Sender` keeps one connector per registration and drops its tokens after
  :data:`TOKEN_SECONDS` or at the first ``401``, and asks again once;
- **errors as data**: every outcome is an :class:`~service.domain.lti_outbox.Answer` (the
  status, the platform's words), never an exception out of :meth:`Sender.send`.

A line item: the row's ``lineitem_url`` (the launch's AGS claim named one), else the one of the
context's container (``lineitems_url``) whose ``resourceId`` is the exercise, made when there is
none (``scoreMaximum`` the exercise's points, label the exercise); its URL is then kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import requests
from pylti1p3.assignments_grades import AssignmentsGradesService
from pylti1p3.exception import LtiException, LtiServiceException
from pylti1p3.grade import Grade
from pylti1p3.lineitem import LineItem
from pylti1p3.service_connector import ServiceConnector

from service.domain.lti_outbox import PERMANENT, Answer, Claimed
from service.extensions import DbSession
from service.lti.lms_settings import AGS_SCORE
from service.lti.tool_conf import DatabaseToolConf, ToolRegistration, UnknownPlatform

log = logging.getLogger(__name__)

#: Seconds of each HTTP call to a platform (connect and read).
TIMEOUT = 10.0
#: Seconds an access token is used before a new one is asked for (platforms give an hour).
TOKEN_SECONDS = 45 * 60
USER_AGENT = "notebook-grader (pylti1p3)"


class _TimedSession(requests.Session):
    """A ``requests`` session whose every call has a timeout."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        self.headers["User-Agent"] = USER_AGENT

    def request(self, method: str | bytes, url: str | bytes, *args: Any,
                **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


class _Connector(ServiceConnector):
    """pylti1p3's connector, whose tokens are forgotten after ``token_seconds``."""

    def __init__(self, registration: ToolRegistration, timeout: float,
                 token_seconds: float) -> None:
        super().__init__(registration, _TimedSession(timeout))
        self.kid = registration.get_kid()
        self.token_seconds = token_seconds
        self._since = time.monotonic()

    def get_access_token(self, scopes: Any) -> str:
        if time.monotonic() - self._since > self.token_seconds:
            self.forget_tokens()
        if not self._access_tokens:
            self._since = time.monotonic()
        return super().get_access_token(scopes)

    def forget_tokens(self) -> None:
        self._access_tokens.clear()
        self._since = time.monotonic()


def _timestamp(value: dt.datetime) -> str:
    """ISO 8601 with the UTC offset, milliseconds kept (AGS asks for them)."""
    return value.replace(tzinfo=dt.UTC).isoformat(timespec="milliseconds")


def grade_of(claimed: Claimed) -> Grade:
    """The AGS score of a claimed row."""
    grade = (Grade().set_score_maximum(claimed.score_maximum)
             .set_activity_progress(claimed.activity_progress)
             .set_grading_progress(claimed.grading_progress)
             .set_timestamp(_timestamp(claimed.scored_at)).set_user_id(claimed.sub))
    if claimed.score_given is not None:
        grade.set_score_given(claimed.score_given)
    if claimed.comment:
        grade.set_comment(claimed.comment)
    return grade


class Sender:
    """Sends claimed rows; keeps one connector (and its tokens) per registration for the life
    of the sender, made again when the tool's signing key changes."""

    def __init__(self, timeout: float = TIMEOUT, token_seconds: float = TOKEN_SECONDS) -> None:
        self.timeout, self.token_seconds = timeout, token_seconds
        self._connectors: dict[tuple[str, str], _Connector] = {}

    def _connector(self, session: DbSession, issuer: str, client_id: str) -> _Connector:
        registration = DatabaseToolConf(session).registration(issuer, client_id)
        key = (issuer, client_id)
        found = self._connectors.get(key)
        if found is None or found.kid != registration.get_kid():
            found = _Connector(registration, self.timeout, self.token_seconds)
            self._connectors[key] = found
        return found

    def send(self, session: DbSession, claimed: Claimed) -> Answer:
        """Send one row's score: the platform's answer, never an exception."""
        try:
            connector = self._connector(session, claimed.issuer, claimed.client_id)
        except UnknownPlatform as exc:
            return Answer(None, str(exc), permanent=True)
        finally:
            session.rollback()
        try:
            return self._send(connector, claimed)
        except LtiServiceException as exc:
            if exc.response.status_code == 401:  # a token the platform no longer takes
                connector.forget_tokens()
                try:
                    return self._send(connector, claimed)
                except LtiServiceException as again:
                    return _refused(again)
                except (LtiException, requests.RequestException, ValueError) as again:
                    return _unreached(again)
            return _refused(exc)
        except (requests.RequestException, ValueError) as exc:
            return _unreached(exc)
        except LtiException as exc:  # pylti1p3's own refusal: a scope the launch did not grant
            return Answer(None, f"{exc}", permanent=True)
        except (KeyError, TypeError) as exc:  # an answer not shaped as the specification says
            return _unreached(exc)

    def _send(self, connector: _Connector, claimed: Claimed) -> Answer:
        scopes = list(claimed.scopes) or [AGS_SCORE]
        data: dict[str, Any] = {"scope": scopes}
        if claimed.lineitems_url:
            data["lineitems"] = claimed.lineitems_url
        if claimed.lineitem_url:
            data["lineitem"] = claimed.lineitem_url
        service = AssignmentsGradesService(connector, data)  # type: ignore[arg-type]
        found_url = None
        if claimed.lineitem_url:
            service.put_grade(grade_of(claimed))
        elif claimed.lineitems_url:
            wanted = (LineItem().set_resource_id(claimed.exercise).set_label(claimed.exercise)
                      .set_score_maximum(claimed.score_maximum)
                      .set_resource_link_id(claimed.resource_link_id))
            item = service.find_or_create_lineitem(wanted, find_by="resource_id")
            found_url = item.get_id()
            service.put_grade(grade_of(claimed), item)
        else:
            return Answer(None, "the launch gave no line item nor line items container "
                          "(the platform's grade service is off for this link)", permanent=True)
        return Answer(200, None, found_url)


def _refused(exc: LtiServiceException) -> Answer:
    status = exc.response.status_code
    text = (exc.response.text or "").strip()[:1000]
    return Answer(status, f"HTTP {status} from {exc.response.url}: {text}",
                  permanent=status in PERMANENT)


def _unreached(exc: Exception) -> Answer:
    return Answer(None, f"{type(exc).__name__}: {exc}")
