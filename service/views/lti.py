"""The tool's LTI 1.3 routes under ``/lti``: the public keys platforms check the tool's
signatures with, Canvas's developer key configuration, the OIDC login and the launch (single
sign-on into an exercise, or an instructor's exercise picker for deep linking).

- ``GET|POST /lti/login``: the platform's login initiation. The first answer is a page whose
  script checks that the browser keeps the tool's cookies (inside the LMS's frame it may not)
  and then comes back with ``lti_cookies_checked=1``; that request is sent on to the
  platform's authorization endpoint (``service.lti.launch.login_redirect``).
- ``POST /lti/launch``: the platform's form post of the id_token, validated
  (``service.lti.launch.validated_launch``). A resource link opens its exercise (custom
  parameter ``exercise``): a learner is logged in as a student (``service.domain.lti_accounts``)
  and lands on the upload page, course staff on the exercise's dashboard page (and the roster
  is synced); the link's grade and roster endpoints are recorded
  (``service.domain.lti_links.record_link``). A deep-linking request shows course staff the
  exercises to place.
- ``POST /lti/deep-link``: the picked exercise, answered to the platform as a signed
  ``ltiResourceLink`` with its line item (a form that posts itself to the platform).

Only the login and the launch are exempt from CSRF (the platform posts them; the launch is
proven by its signature, state and nonce); the picker's form carries a CSRF token. Every
refusal is a 4xx page saying what happened and what to do (``lti/refused.html``), in the
page's language.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import login_user
from pylti1p3.deep_link_resource import DeepLinkResource
from pylti1p3.exception import LtiException
from pylti1p3.lineitem import LineItem
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response as BaseResponse

from service.domain.lti_accounts import (
    Person,
    is_instructor_roles,
    join_context,
    link_instructor,
    link_student,
)
from service.domain.lti_keys import published_keys
from service.domain.lti_links import NRPS_CLAIM, MembershipSource, record_link
from service.domain.lti_registrations import find_platform, platform_id_of
from service.domain.submissions import known_exercises
from service.extensions import csrf, db
from service.lti import cookies
from service.lti.launch import (
    LaunchRefused,
    ToolLaunch,
    login_redirect,
    restored_launch,
    validated_launch,
)
from service.lti.lms_settings import (
    EXERCISE_PARAMETER,
    canvas_configuration,
    public_base,
    tool_urls,
)
from service.lti.roster import sync_source
from service.views import language
from service.views.frame import Page, is_instructor
from service.views.language import N_

log = logging.getLogger(__name__)

bp = Blueprint("lti", __name__, url_prefix="/lti")

#: The login request's parameter saying the cookie check passed.
COOKIES_CHECKED = "lti_cookies_checked"
#: The login initiation's parameters carried through the cookie check.
LOGIN_PARAMS = ("iss", "login_hint", "target_link_uri", "lti_message_hint",
                "lti_deployment_id", "client_id")
#: Session key: the deep-linking launch this browser's instructor is answering.
DEEP_LINK_KEY = "lti_deep_link"
CUSTOM_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/custom"
ROLES_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/roles"
PRESENTATION_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/launch_presentation"
DL_SETTINGS_CLAIM = "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
#: Refusals of the launch that are not the protocol's (``service.lti.launch`` has those).
VIEW_STATUS = {"no_exercise": 400, "unknown_exercise": 404, "not_instructor": 403,
               "no_deep_link": 400}
#: The refusals' headings and texts, keyed by code (``refused`` builds the keys).
REFUSAL_KEYS = (
    N_("lti.refused.no_cookie"), N_("lti.refused.no_cookie.body"),
    N_("lti.refused.state"), N_("lti.refused.state.body"),
    N_("lti.refused.unknown_platform"), N_("lti.refused.unknown_platform.body"),
    N_("lti.refused.audience"), N_("lti.refused.audience.body"),
    N_("lti.refused.deployment"), N_("lti.refused.deployment.body"),
    N_("lti.refused.signature"), N_("lti.refused.signature.body"),
    N_("lti.refused.expired"), N_("lti.refused.expired.body"),
    N_("lti.refused.replayed"), N_("lti.refused.replayed.body"),
    N_("lti.refused.message"), N_("lti.refused.message.body"),
    N_("lti.refused.keys_unreachable"), N_("lti.refused.keys_unreachable.body"),
    N_("lti.refused.login"), N_("lti.refused.login.body"),
    N_("lti.refused.no_exercise"), N_("lti.refused.no_exercise.body"),
    N_("lti.refused.unknown_exercise"), N_("lti.refused.unknown_exercise.body"),
    N_("lti.refused.not_instructor"), N_("lti.refused.not_instructor.body"),
    N_("lti.refused.no_deep_link"), N_("lti.refused.no_deep_link.body"),
)


def init_app(app: Flask) -> None:
    """The blueprint, and the session cookie that works inside the LMS's frame."""
    app.session_interface = cookies.LtiSessionInterface()
    app.register_blueprint(bp)


def _urls() -> Any:
    return tool_urls(public_base(current_app.config.get("PUBLIC_URL"), request.host_url))


@bp.get("/jwks")
def jwks() -> tuple[dict[str, list[dict[str, Any]]], int, dict[str, str]]:
    """The tool's JSON Web Key Set: the signing key and the replaced keys not yet retired
    (public halves only). Platforms cache it; so may proxies, for a few minutes."""
    return published_keys(db.session), 200, {"Cache-Control": "public, max-age=300"}


@bp.get("/canvas.json")
def canvas() -> dict[str, object]:
    """The JSON to paste into (or the URL to give) Canvas's "LTI key" form."""
    return canvas_configuration(_urls(), _("lti.tool.title"), _("lti.tool.description"))


# --- the login and the launch ----------------------------------------------------------------


def refused(code: str, status: int | None = None, detail: str = "") -> Page:
    """The page of a refused login or launch: what happened and what to do."""
    log.info("LTI refused: %s %s", code, detail)
    return render_template("lti/refused.html", code=code, heading=_(f"lti.refused.{code}"),
                           message=_(f"lti.refused.{code}.body")), status or VIEW_STATUS.get(
                               code, 400)


@bp.route("/login", methods=["GET", "POST"])
@csrf.exempt
def login() -> Page | tuple[str, int, dict[str, str]] | BaseResponse:
    """The platform's OIDC login initiation: the cookie check page, then the redirect to the
    platform's authorization endpoint."""
    if not request.values.get(COOKIES_CHECKED):
        if not request.values.get("iss") or not request.values.get("login_hint"):
            return refused("login", 400, "iss or login_hint missing")
        params = {name: request.values[name] for name in LOGIN_PARAMS if request.values.get(name)}
        page = render_template("lti/cookie_check.html", params=params,
                               checked=COOKIES_CHECKED, action=url_for("lti.login"),
                               https=cookies.served_over_https())
        return page, 200, {"Cache-Control": "no-store"}
    try:
        return login_redirect(_urls().launch)
    except LaunchRefused as exc:
        return refused(exc.code, exc.status, exc.detail)


@bp.post("/launch")
@csrf.exempt
def launch() -> Page | BaseResponse:
    """The platform's launch (a resource link or a deep-linking request)."""
    try:
        tool_launch, claims = validated_launch()
    except LaunchRefused as exc:
        db.session.rollback()
        return refused(exc.code, exc.status, exc.detail)
    try:
        return _enter(tool_launch, claims)
    except IntegrityError:  # the same user's first launch twice at once: the other made it
        db.session.rollback()
        return _enter(tool_launch, claims)


def _enter(tool_launch: ToolLaunch, claims: dict[str, Any]) -> Page | BaseResponse:
    """Log the launch's user in and open what the launch asks for."""
    platform = find_platform(db.session, str(claims["iss"]), tool_launch.get_client_id())
    assert platform is not None  # validated: registered
    platform_id = platform_id_of(db.session, platform.issuer, platform.client_id)
    person = Person.from_claims(claims)
    staff = is_instructor_roles(claims.get(ROLES_CLAIM) or [])
    presentation = claims.get(PRESENTATION_CLAIM) or {}
    frame_urls = [platform.issuer, platform.auth_login_url,
                  presentation.get("return_url") if isinstance(presentation, dict) else None]

    if tool_launch.is_deep_link_launch():
        if not staff:
            return refused("not_instructor", detail=f"deep linking by {person.sub!r}")
        settings = claims.get(DL_SETTINGS_CLAIM) or {}
        account = link_instructor(db.session, platform_id, platform.issuer, person)
        db.session.commit()
        _log_in(account.instructor, [*frame_urls, settings.get("deep_link_return_url")])
        session[DEEP_LINK_KEY] = tool_launch.get_launch_id()
        return _picker(settings)

    exercise = str((claims.get(CUSTOM_CLAIM) or {}).get(EXERCISE_PARAMETER) or "").strip()
    if not exercise:
        return refused("no_exercise", detail="no custom parameter exercise")
    if exercise not in known_exercises():
        return refused("unknown_exercise", detail=f"exercise {exercise!r}")
    link = record_link(db.session, platform_id, claims, exercise)
    if staff:
        account = link_instructor(db.session, platform_id, platform.issuer, person)
        join_context(db.session, account, link.context_id)
        db.session.commit()
        _log_in(account.instructor, frame_urls)
        nrps = claims.get(NRPS_CLAIM)
        if isinstance(nrps, dict) and nrps.get("context_memberships_url"):
            _sync_on_launch(platform_id, platform.issuer, platform.client_id, claims,
                            str(nrps["context_memberships_url"]))
        return redirect(url_for("dashboard.exercise", exercise_id=exercise), 303)
    account, _created = link_student(db.session, platform_id, platform.issuer, person)
    join_context(db.session, account, link.context_id)
    db.session.commit()
    _log_in(account.student, frame_urls)
    return redirect(url_for("web.upload", exercise=exercise), 303)


def _log_in(user: Any, frame_urls: list[Any]) -> None:
    """Log ``user`` in, in a session marked as launched (cookies and frames: ``cookies``)."""
    keep = session.get(language.SESSION_KEY)
    session.clear()
    if keep:
        session[language.SESSION_KEY] = keep
    login_user(user)
    cookies.mark_framed(*frame_urls)


def _sync_on_launch(platform_id: int, issuer: str, client_id: str, claims: dict[str, Any],
                    url: str) -> None:
    context = claims.get("https://purl.imsglobal.org/spec/lti/claim/context") or {}
    source = MembershipSource(platform_id, issuer, client_id,
                              context.get("id") if isinstance(context, dict) else None, url)
    result = sync_source(db.session, source)
    if result.counts is None:
        flash(_("lti.roster.failed", error=result.error), "error")
    else:
        flash(_("lti.roster.done", created=result.counts.created, linked=result.counts.linked,
                skipped=result.counts.skipped), "info")


# --- deep linking ------------------------------------------------------------------------------


def exercise_choices() -> list[tuple[str, str, float]]:
    """Every exercise open for submission: id, title in the page's language, points."""
    config = current_app.config["GRADER"]
    found = []
    for exercise_id in known_exercises():
        spec = config.exercise(exercise_id)
        found.append((exercise_id, language.localize(spec.title), spec.max_score))
    return found


def _picker(settings: dict[str, Any], status: int = 200) -> Page:
    return render_template("lti/deep_link.html", exercises=exercise_choices(),
                           multiple=settings.get("accept_multiple") in (True, "true")), status


@bp.post("/deep-link")
def deep_link() -> Page | tuple[str, int, dict[str, str]] | BaseResponse:
    """The instructor's pick, answered to the platform: a signed ``LtiDeepLinkingResponse``
    with one ``ltiResourceLink`` per exercise picked (``custom.exercise``, a line item of the
    exercise's points), posted by a form that submits itself."""
    launch_id = session.get(DEEP_LINK_KEY)
    if not launch_id or not is_instructor():
        return refused("no_deep_link", detail="no deep-linking launch in this session")
    chosen = [e for e in request.form.getlist("exercise") if e]
    by_id = {e[0]: e for e in exercise_choices()}
    if not chosen or any(e not in by_id for e in chosen):
        abort(400)
    try:
        tool_launch = restored_launch(launch_id)
        deep = tool_launch.get_deep_link()
        resources = [_resource(*by_id[e]) for e in chosen]
        token = deep.get_response_jwt(resources)
        launch_claims: dict[str, Any] = dict(tool_launch.get_launch_data())
        return_url = launch_claims[DL_SETTINGS_CLAIM]["deep_link_return_url"]
    except LaunchRefused as exc:
        return refused(exc.code, exc.status, exc.detail)
    except (LtiException, KeyError, TypeError) as exc:
        return refused("no_deep_link", detail=str(exc))
    session.pop(DEEP_LINK_KEY, None)
    return render_template("lti/deep_link_return.html", action=return_url, token=token,
                           count=len(resources)), 200, {"Cache-Control": "no-store"}


def _resource(exercise_id: str, title: str, points: float) -> DeepLinkResource:
    item = (LineItem().set_score_maximum(points).set_label(title).set_resource_id(exercise_id)
            .set_tag("grade"))
    return (DeepLinkResource().set_url(_urls().launch).set_title(title)
            .set_custom_params({EXERCISE_PARAMETER: exercise_id}).set_lineitem(item))
