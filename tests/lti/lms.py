"""The LMS of the tests: an LTI 1.3 platform (LTI Advantage) served over real HTTP on a free
port of 127.0.0.1, in a thread of the test's process. See :mod:`tests.lti` for why it is ours.

Endpoints (``issuer`` is ``http://127.0.0.1:PORT``; the course is ``Platform.context``):

==========================================  ====================================================
``GET /jwks``                               the platform's public keys
``GET /launch/<hint>``                      the page a browser opens to start a launch: logs the
                                            user in to the platform (a cookie) and posts (or
                                            redirects) the login initiation to the tool
``GET|POST /auth``                          OIDC authorization: checks the tool's request and
                                            answers with a form posting ``id_token`` and ``state``
                                            to the registered ``redirect_uri``
``POST /token``                             OAuth2 client credentials with a JWT assertion
``GET|POST /contexts/<c>/lineitems``        AGS line items container
``GET|PUT|DELETE .../lineitems/<n>``        a line item
``POST .../lineitems/<n>/scores``           scores (``application/vnd.ims.lis.v1.score+json``)
``GET .../lineitems/<n>/results``           results
``GET /contexts/<c>/memberships``           NRPS context membership
``POST /deep_links/<hint>``                 the tool's deep-linking response (form field ``JWT``)
==========================================  ====================================================

Every request is recorded (:attr:`Platform.requests`); :meth:`Platform.set_outage` makes named
endpoints answer 503 (or answer late), :meth:`Platform.go_offline` closes the port (connection
refused) until :meth:`Platform.go_online` opens it again.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from tests.lti import claims as c
from tests.lti.claims import Context, LaunchPlan, MessageType, ResourceLink, Scope, User
from tests.lti.deep_linking import DeepLinkResult, checked_response, settings_claim
from tests.lti.gradebook import Gradebook, LineItem, ReceivedScore
from tests.lti.keys import KeyPair, Refused, key_set
from tests.lti.oauth import TokenIssuer, ToolRegistration
from tests.lti.pages import autosubmit_form, message_page
from tests.lti.server import Outage, RecordedRequest, Server
from tests.lti.services import AGS_SCOPES, Services, json_response

#: The endpoints' names, as :meth:`Platform.set_outage` and the request records use them.
ENDPOINTS = ("jwks", "launch", "auth", "token", "lineitems", "lineitem", "scores", "results",
             "memberships", "deep_link")

_RULES = Map([
    Rule("/jwks", endpoint="jwks", methods=["GET"]),
    Rule("/launch/<hint>", endpoint="launch", methods=["GET"]),
    Rule("/auth", endpoint="auth", methods=["GET", "POST"]),
    Rule("/token", endpoint="token", methods=["POST"]),
    Rule("/contexts/<context>/lineitems", endpoint="lineitems", methods=["GET", "POST"]),
    Rule("/contexts/<context>/lineitems/<int:number>", endpoint="lineitem",
         methods=["GET", "PUT", "DELETE"]),
    Rule("/contexts/<context>/lineitems/<int:number>/scores", endpoint="scores",
         methods=["POST"]),
    Rule("/contexts/<context>/lineitems/<int:number>/results", endpoint="results",
         methods=["GET"]),
    Rule("/contexts/<context>/memberships", endpoint="memberships", methods=["GET"]),
    Rule("/deep_links/<hint>", endpoint="deep_link", methods=["POST"]),
], strict_slashes=False)


@dataclass(frozen=True)
class LaunchPost:
    """An id_token the platform handed the browser to post to the tool (to replay it)."""

    plan: LaunchPlan
    redirect_uri: str
    id_token: str
    state: str


@dataclass
class _State:
    plans: dict[str, LaunchPlan] = field(default_factory=dict)
    links: dict[str, ResourceLink] = field(default_factory=dict)
    launch_posts: list[LaunchPost] = field(default_factory=list)
    deep_links: list[DeepLinkResult] = field(default_factory=list)
    dl_nonces: set[str] = field(default_factory=set)


class Platform:
    """An LTI 1.3 platform on 127.0.0.1: start it (``with Platform() as lms``), register the
    tool (:meth:`register_tool`), register the platform in the tool
    (:meth:`registration_options`), then open :meth:`launch_url` in a browser."""

    def __init__(self, *, context: Context | None = None, login_method: str = "POST",
                 check_login_cookie: bool = True, id_token_lifetime: int = 300) -> None:
        #: the course every launch happens in
        self.context = context or Context()
        #: how the launch page sends the login initiation to the tool: a form "POST" or a "GET"
        self.login_method = login_method
        #: refuse an authorization request from a browser not logged in as its login_hint
        self.check_login_cookie = check_login_cookie
        self.id_token_lifetime = id_token_lifetime
        #: the key launches are signed with; :attr:`published` is what /jwks serves
        self.key = KeyPair.generate()
        self.published: list[KeyPair] = [self.key]
        self.tool: ToolRegistration | None = None
        self.gradebook = Gradebook(self.context)
        self._state = _State()
        self._lock = threading.Lock()
        self.server = Server(_RULES, self._dispatch, frozenset({"launch", "auth", "deep_link"}))
        self.tokens = TokenIssuer("")
        self.services = Services(self.context, self.gradebook, self.tokens)

    # --- serving --------------------------------------------------------------------------

    def start(self) -> None:
        """Serve on a free port (the first time) or on the port it had (after going offline)."""
        self.server.start()
        self.tokens.token_url = self.token_url
        self.services.lineitems_url, self.services.memberships_url = (self.lineitems_url,
                                                                      self.memberships_url)

    def stop(self) -> None:
        self.server.stop()

    def go_offline(self) -> None:
        """Close the port: every request is refused at connection until :meth:`go_online`."""
        self.stop()

    def go_online(self) -> None:
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # --- addresses ------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        assert self.server.port, "the platform is not started"
        return f"http://127.0.0.1:{self.server.port}"

    def url(self, path: str) -> str:
        return self.issuer + path

    @property
    def jwks_url(self) -> str:
        return self.url("/jwks")

    @property
    def auth_url(self) -> str:
        return self.url("/auth")

    @property
    def token_url(self) -> str:
        return self.url("/token")

    @property
    def lineitems_url(self) -> str:
        return self.url(f"/contexts/{self.context.id}/lineitems")

    @property
    def memberships_url(self) -> str:
        return self.url(f"/contexts/{self.context.id}/memberships")

    # --- setting up -----------------------------------------------------------------------

    def register_tool(self, tool: ToolRegistration) -> None:
        """Add the tool, as an LMS administrator does (one tool per platform)."""
        self.tool = tool

    def registration_options(self, deployment_id: str | None = None) -> list[str]:
        """The options of ``flask --app service lti register`` that register this platform."""
        tool = self._registered()
        return ["--issuer", self.issuer, "--client-id", tool.client_id,
                "--deployment-id", deployment_id or tool.deployment_ids[0],
                "--auth-login-url", self.auth_url, "--auth-token-url", self.token_url,
                "--key-set-url", self.jwks_url]

    def rotate_key(self, *, keep_old: bool = True) -> KeyPair:
        """Sign with a new key from now on; the old one stays published unless ``keep_old``
        is false."""
        new = KeyPair.generate()
        self.published = [*self.published, new] if keep_old else [new]
        self.key = new
        return new

    def add_line_item(self, label: str, score_maximum: float, *, resource_link: str = "",
                      resource_id: str = "", tag: str = "") -> LineItem:
        """A gradebook column, tied to a resource link (whose launches then name it)."""
        return self.gradebook.add_line_item(self.lineitems_url, label, score_maximum,
                                            resource_id=resource_id, tag=tag,
                                            resource_link_id=resource_link)

    def add_resource_link(self, link: ResourceLink) -> ResourceLink:
        with self._lock:
            self._state.links[link.id] = link
        return link

    def enrol(self, user: User, roles: Iterable[str]) -> None:
        """Put ``user`` in the course with ``roles`` (as Names and Roles will list them)."""
        self.gradebook.enrol(user, tuple(roles))

    def set_outage(self, *endpoints: str, status: int = 503, delay: float = 0.0) -> None:
        """Make ``endpoints`` (names of :data:`ENDPOINTS`) answer ``status`` after ``delay``
        seconds, until :meth:`clear_outage`."""
        unknown = set(endpoints) - set(ENDPOINTS)
        assert not unknown, f"no endpoints {sorted(unknown)}"
        self.server.outage = Outage(frozenset(endpoints), status, delay)

    def clear_outage(self) -> None:
        self.server.outage = None

    # --- launches -------------------------------------------------------------------------

    def plan_launch(self, user: User, roles: Iterable[str],
                    resource_link: ResourceLink | str | None = None, *,
                    custom: Mapping[str, str] | None = None,
                    message_type: MessageType = MessageType.RESOURCE_LINK,
                    deployment_id: str | None = None, target_link_uri: str | None = None,
                    claim_overrides: Mapping[str, Any] | None = None,
                    signing_key: KeyPair | None = None, enrol: bool = True) -> LaunchPlan:
        """A launch of ``user`` with ``roles`` from ``resource_link`` (a link of the platform,
        or the id of a new one), kept under its ``hint`` (the ``lti_message_hint``) until the
        tool asks for its id_token. ``enrol`` puts the user in the course."""
        tool = self._registered()
        link = self._link(resource_link, message_type)
        deep = message_type is MessageType.DEEP_LINKING
        plan = LaunchPlan(
            hint=secrets.token_urlsafe(12), message_type=message_type, user=user,
            roles=tuple(roles), deployment_id=deployment_id or tool.deployment_ids[0],
            target_link_uri=target_link_uri or (
                tool.deep_link_url or tool.target_link_uri if deep else tool.target_link_uri),
            context=self.context, resource_link=link, custom=dict(custom or {}),
            claim_overrides=dict(claim_overrides or {}), signing_key=signing_key)
        if enrol:
            self.enrol(user, plan.roles)
        with self._lock:
            self._state.plans[plan.hint] = plan
        return plan

    def launch_url(self, user: User, roles: Iterable[str],
                   resource_link: ResourceLink | str | None = None, **options: Any) -> str:
        """The platform's page a browser opens to launch (see :meth:`plan_launch`)."""
        return self.start_url(self.plan_launch(user, roles, resource_link, **options))

    def start_url(self, plan: LaunchPlan) -> str:
        return self.url(f"/launch/{plan.hint}")

    def _link(self, given: ResourceLink | str | None,
              message_type: MessageType) -> ResourceLink | None:
        if isinstance(given, ResourceLink):
            return self.add_resource_link(given)
        if given is None:
            assert message_type is MessageType.DEEP_LINKING, "a resource link launch needs a link"
            return None
        with self._lock:
            return self._state.links.get(given) or ResourceLink(given)

    def services_claims(self, plan: LaunchPlan) -> dict[str, Any]:
        """The AGS, NRPS and deep-linking settings claims the platform grants a launch."""
        tool = self._registered()
        found: dict[str, Any] = {}
        scopes = [str(scope) for scope in AGS_SCOPES if scope in tool.scopes]
        if scopes:
            endpoint: dict[str, Any] = {"scope": scopes, "lineitems": self.lineitems_url}
            item = (self.gradebook.line_item_of_link(plan.resource_link.id)
                    if plan.resource_link else None)
            if item is not None:
                endpoint["lineitem"] = item.url
            found[c.AGS_ENDPOINT] = endpoint
        if Scope.MEMBERSHIPS in tool.scopes:
            found[c.NRPS] = {"context_memberships_url": self.memberships_url,
                             "service_versions": ["2.0"]}
        if plan.message_type is MessageType.DEEP_LINKING:
            found.update(settings_claim(plan, self.url(f"/deep_links/{plan.hint}")))
        return found

    def id_token_claims(self, plan: LaunchPlan, nonce: str) -> dict[str, Any]:
        """The claims of ``plan``'s id_token for the tool's ``nonce`` (overrides applied)."""
        return c.id_token_claims(plan, issuer=self.issuer, client_id=self._registered().client_id,
                                 nonce=nonce, services=self.services_claims(plan),
                                 lifetime=self.id_token_lifetime)

    def id_token(self, plan: LaunchPlan, nonce: str) -> str:
        """``plan``'s id_token, signed by its signing key or the platform's current one."""
        return (plan.signing_key or self.key).sign(self.id_token_claims(plan, nonce))

    def _registered(self) -> ToolRegistration:
        assert self.tool is not None, "no tool registered: call register_tool first"
        return self.tool

    # --- what happened --------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request answered, in order."""
        return self.server.records

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.endpoint == endpoint]

    @property
    def launch_posts(self) -> list[LaunchPost]:
        with self._lock:
            return list(self._state.launch_posts)

    @property
    def deep_links(self) -> list[DeepLinkResult]:
        with self._lock:
            return list(self._state.deep_links)

    @property
    def errors(self) -> list[str]:
        """Tracebacks of requests the platform failed on itself (a test expects none)."""
        return self.server.errors

    def wait_for_result(self, line_item: LineItem | str, user_id: str, *,
                        timeout: float = 60.0, given: float | None = None) -> ReceivedScore:
        """The result of ``user_id`` in ``line_item`` once it has come (with ``scoreGiven`` =
        ``given`` when that is set); AssertionError after ``timeout`` seconds."""
        url = line_item if isinstance(line_item, str) else line_item.url
        deadline = time.monotonic() + timeout
        while True:
            result = self.gradebook.result(url, user_id)
            if result is not None and (given is None or result.score_given == given):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"no score {given if given is not None else ''} for "
                                     f"{user_id} at {url} in {timeout:.0f} s; received: "
                                     f"{self.gradebook.received}")
            time.sleep(0.2)

    def resource_link(self, link_id: str) -> ResourceLink:
        with self._lock:
            return self._state.links[link_id]

    # --- HTTP -----------------------------------------------------------------------------

    def _dispatch(self, endpoint: str, request: Request, args: Mapping[str, Any]) -> Response:
        if "context" in args and args["context"] != self.context.id:
            raise Refused("not_found", f"no course {args['context']}", 404)
        if endpoint == "jwks":
            return json_response(key_set(self.published))
        if endpoint == "launch":
            return self._start_launch(args["hint"])
        if endpoint == "auth":
            return self._authorize(request)
        if endpoint == "token":
            token = self.tokens.issue(request.form.to_dict(), self.tool)
            return json_response(token.to_json(), headers={"Cache-Control": "no-store"})
        if endpoint == "deep_link":
            return self._deep_link_response(args["hint"], request)
        return self.services.answer(endpoint, request, args)

    def _start_launch(self, hint: str) -> Response:
        tool = self._registered()
        with self._lock:
            plan = self._state.plans.get(hint)
        if plan is None:
            raise Refused("invalid_request", f"no launch {hint}", 404)
        fields = {"iss": self.issuer, "login_hint": plan.user.sub,
                  "target_link_uri": plan.target_link_uri, "lti_message_hint": plan.hint,
                  "client_id": tool.client_id, "lti_deployment_id": plan.deployment_id}
        if self.login_method == "GET":
            joiner = "&" if "?" in tool.login_url else "?"
            response = Response(status=302, headers={
                "Location": f"{tool.login_url}{joiner}{urlencode(fields)}"})
        else:
            response = Response(autosubmit_form(tool.login_url, fields), 200,
                                content_type="text/html; charset=utf-8")
        response.set_cookie(self._cookie, plan.user.sub, httponly=True, samesite="Lax")
        return response

    @property
    def _cookie(self) -> str:
        return f"lms_user_{self.server.port}"

    def _authorize(self, request: Request) -> Response:
        """OIDC authorization of an LTI launch (LTI Core 1.3 section 5.1.1): the tool's
        authentication request is checked field by field before anything is signed."""
        tool, asked = self._registered(), request.values
        if asked.get("client_id") != tool.client_id:
            raise Refused("unauthorized_client", f"unknown client_id {asked.get('client_id')!r}")
        if asked.get("redirect_uri") not in tool.redirect_uris:
            raise Refused("invalid_request",
                          f"redirect_uri {asked.get('redirect_uri')!r} is not registered")
        expected = {"scope": "openid", "response_type": "id_token",
                    "response_mode": "form_post", "prompt": "none"}
        for name, value in expected.items():
            if asked.get(name) != value:
                raise Refused("invalid_request", f"{name} must be {value!r}")
        for name in ("nonce", "state", "login_hint", "lti_message_hint"):
            if not asked.get(name):
                raise Refused("invalid_request", f"{name} is required")
        with self._lock:
            plan = self._state.plans.get(asked["lti_message_hint"])
        if plan is None:
            raise Refused("invalid_request", "lti_message_hint names no launch")
        if asked["login_hint"] != plan.user.sub:
            raise Refused("invalid_request", "login_hint is not the launch's user")
        if self.check_login_cookie and request.cookies.get(self._cookie) != plan.user.sub:
            raise Refused("login_required", "this browser is not logged in as the launch's user")
        id_token = self.id_token(plan, asked["nonce"])
        post = LaunchPost(plan, asked["redirect_uri"], id_token, asked["state"])
        with self._lock:
            self._state.launch_posts.append(post)
        return Response(autosubmit_form(post.redirect_uri,
                                        {"id_token": id_token, "state": post.state}),
                        200, content_type="text/html; charset=utf-8")

    def _deep_link_response(self, hint: str, request: Request) -> Response:
        """The tool's answer to a deep-linking request: checked
        (:func:`~tests.lti.deep_linking.checked_response`), then placed as links."""
        tool = self._registered()
        with self._lock:
            plan = self._state.plans.get(hint)
        if plan is None or plan.message_type is not MessageType.DEEP_LINKING:
            raise Refused("invalid_request", "no deep-linking request answers to this URL", 404)
        token = request.form.get("JWT", "")
        if not token:
            raise Refused("invalid_request", "the form field JWT is required")
        found, items = checked_response(token, plan, tool, self.issuer)
        with self._lock:
            if found["nonce"] in self._state.dl_nonces:
                raise Refused("invalid_request", "this deep-linking response was already used")
            self._state.dl_nonces.add(found["nonce"])
        links, line_items = self._place(items)
        with self._lock:
            self._state.deep_links.append(DeepLinkResult(plan, found, items, links, line_items))
        return Response(message_page("Content added", f"{len(links)} item(s) added"), 200,
                        content_type="text/html; charset=utf-8")

    def _place(self, items: list[dict[str, Any]]) -> tuple[list[ResourceLink], list[LineItem]]:
        """Resource links (and their line items) for the content items, as an LMS makes them."""
        links, line_items = [], []
        for item in items:
            with self._lock:
                link_id = f"link-{len(self._state.links) + 1}"
            link = self.add_resource_link(ResourceLink(link_id, str(item.get("title", "")),
                                                       item.get("custom", {})))
            links.append(link)
            if "lineItem" in item:
                fields = item["lineItem"]
                line_items.append(self.gradebook.add_line_item(
                    self.lineitems_url, fields["label"], fields["score_maximum"],
                    resource_id=fields["resource_id"], tag=fields["tag"],
                    resource_link_id=link.id))
        return links, line_items
