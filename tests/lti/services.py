"""LTI Advantage's services as the platform serves them over HTTP: Assignment and Grade
Services 2.0 (line items, scores, results) and Names and Role Provisioning Services 2.0
(context membership). Every call's bearer token is checked first (:mod:`tests.lti.oauth`),
then its content type and body; the records live in :mod:`tests.lti.gradebook`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from tests.lti.claims import Context, MediaType, Scope
from tests.lti.gradebook import Gradebook
from tests.lti.keys import Refused
from tests.lti.oauth import TokenIssuer

#: The AGS scopes a launch's endpoint claim offers (those the tool is registered for).
AGS_SCOPES = (Scope.LINEITEM, Scope.LINEITEM_READONLY, Scope.RESULT_READONLY, Scope.SCORE)
_READ = (Scope.LINEITEM, Scope.LINEITEM_READONLY)


@dataclass
class Services:
    """The services of one course; the URLs are known once the platform has its port."""

    context: Context
    gradebook: Gradebook
    tokens: TokenIssuer
    lineitems_url: str = ""
    memberships_url: str = ""

    def answer(self, endpoint: str, request: Request, args: Mapping[str, Any]) -> Response:
        """The answer to a call of ``endpoint`` (a name of the platform's URL map)."""
        if endpoint == "memberships":
            return self._memberships(request)
        if endpoint in ("lineitems", "scores", "results"):
            return getattr(self, f"_{endpoint}")(request, args)
        return self._line_item(request, f"{self.lineitems_url}/{args['number']}")

    def _check(self, request: Request, *needs: str) -> None:
        self.tokens.check(request.headers.get("Authorization"), needs)

    def _memberships(self, request: Request) -> Response:
        self._check(request, Scope.MEMBERSHIPS)
        role = request.args.get("role")
        members = [member.to_json() for member in self.gradebook.members.values()
                   if role is None or role in member.roles]
        return json_response({"id": self.memberships_url, "context": {
            "id": self.context.id, "label": self.context.label, "title": self.context.title},
            "members": members}, content_type=MediaType.MEMBERSHIPS)

    def _scores(self, request: Request, args: Mapping[str, Any]) -> Response:
        self._check(request, Scope.SCORE)
        _need_type(request, MediaType.SCORE)
        self.gradebook.post_score(f"{self.lineitems_url}/{args['number']}", _body(request))
        return Response(status=200)

    def _results(self, request: Request, args: Mapping[str, Any]) -> Response:
        self._check(request, Scope.RESULT_READONLY)
        results = self.gradebook.results_json(f"{self.lineitems_url}/{args['number']}",
                                              request.args.get("user_id"))
        return json_response(results, content_type=MediaType.RESULTS)

    def _lineitems(self, request: Request, args: Mapping[str, Any]) -> Response:
        if request.method == "GET":
            self._check(request, *_READ)
            filters = {"resource_link_id": "resourceLinkId", "resource_id": "resourceId",
                       "tag": "tag"}
            items = [item.to_json() for item in self.gradebook.line_items.values()]
            chosen = [item for item in items if all(
                request.args.get(name) in (None, item.get(key)) for name, key in filters.items())]
            return json_response(chosen, content_type=MediaType.LINEITEMS)
        self._check(request, Scope.LINEITEM)
        _need_type(request, MediaType.LINEITEM)
        fields = Gradebook.checked_line_item(_body(request))
        item = self.gradebook.add_line_item(self.lineitems_url, fields.pop("label"),
                                            fields.pop("score_maximum"), **fields)
        return json_response(item.to_json(), status=201, content_type=MediaType.LINEITEM)

    def _line_item(self, request: Request, url: str) -> Response:
        if request.method == "GET":
            self._check(request, *_READ)
            return json_response(self.gradebook.line_item(url).to_json(),
                                 content_type=MediaType.LINEITEM)
        self._check(request, Scope.LINEITEM)
        item = self.gradebook.line_item(url)
        if request.method == "DELETE":
            del self.gradebook.line_items[url]
            return Response(status=204)
        _need_type(request, MediaType.LINEITEM)
        fields = Gradebook.checked_line_item(_body(request))
        item.label, item.score_maximum = fields["label"], fields["score_maximum"]
        item.resource_id, item.tag = fields["resource_id"], fields["tag"]
        return json_response(item.to_json(), content_type=MediaType.LINEITEM)


def json_response(value: Any, *, status: int = 200, content_type: str = "application/json",
                  headers: Mapping[str, str] | None = None) -> Response:
    return Response(json.dumps(value), status, content_type=content_type,
                    headers=dict(headers or {}))


def _need_type(request: Request, media_type: str) -> None:
    if request.mimetype != media_type:
        raise Refused("invalid_request", f"Content-Type must be {media_type}", 415)


def _body(request: Request) -> Any:
    try:
        return json.loads(request.get_data(as_text=True))
    except ValueError as error:
        raise Refused("invalid_request", f"the body is not JSON: {error}") from error
