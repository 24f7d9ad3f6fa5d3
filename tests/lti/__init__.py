"""An LTI 1.3 platform (an LMS such as Moodle or Canvas, reduced to what LTI Advantage asks of
it) for the tests of the service's LTI tool: its own RSA keys, launches signed with PyJWT, a
JWKS, OIDC login, an OAuth2 token endpoint, line items and scores, Names and Roles, and deep
linking, served on 127.0.0.1 (:class:`~tests.lti.lms.Platform`). None of the tool's code is
used: the platform checks what the tool sends the way an LMS does, so a tool that passes these
tests has passed an independent implementation of the specifications.

Why not ``lti1p3platform`` (PyPI 0.1.8, the one platform-side package; read in full before
deciding):

- its token endpoint decodes the tool's client assertion with ``verify_aud: False`` and checks
  neither that ``iss``/``sub`` are the client id nor that the ``jti`` is new, and accepts any
  ``client_assertion_type``: an assertion for another audience or a replayed one gets a token,
  which a real LMS refuses. Its repository has fixed part of this since (replay and audience
  checks, 2026) but no release carries the fixes: PyPI still serves 0.1.8 without them;
- a service call's bearer token passes if it holds *any* scope of the service, so a token with
  ``lineitem.readonly`` may post scores;
- the deep-linking response is checked for its signature and message type only (no ``aud``,
  ``iss``, ``nonce``, ``deployment_id`` or ``data``), and the authorization step does not check
  that ``redirect_uri`` is registered, nor ``scope``, ``response_type``, ``response_mode``,
  ``prompt`` or ``login_hint``;
- it serves nothing: abstract classes to subclass for storage, with Django and FastAPI adapters
  only, so the HTTP server, the stores of line items, scores and members, and the outage
  switches would all be ours anyway; it also imports ``typing_extensions`` without declaring
  it, and caches the tool's key set forever (a rotated tool key is never seen).

How a test of the tool uses it (the service served on ``base``)::

    with Platform() as lms:
        lms.register_tool(ToolRegistration.at(base, client_id="grader", deployment_ids=("1",)))
        # flask --app service lti register <lms.registration_options()>
        link = ResourceLink("rl-1", "CNN", {"exercise": "chap06_cnn"})
        item = lms.add_line_item("CNN", 10, resource_link=link.id)
        page.goto(lms.launch_url(User("alice"), [Role.LEARNER], link))  # lands on the upload page
        ...                                                              # upload, graded
        lms.wait_for_result(item, "alice", timeout=60)                   # the score arrived
        lms.set_outage("token", "scores"); lms.go_offline(); lms.go_online(); lms.clear_outage()
        # negative launches: plan_launch(..., claim_overrides={"aud": "x"} | claims.expired(),
        # signing_key=KeyPair.generate(), deployment_id="unknown"); a replay re-posts
        # lms.launch_posts[-1] (redirect_uri, id_token, state); follow_forms() walks the
        # self-submitting pages with requests where no browser is needed.

So this package is our own, small, and strict: PyJWT signs and verifies, ``cryptography`` makes
the keys, werkzeug serves. Its modules:

- :mod:`~tests.lti.claims`: claim names, roles, scopes, media types; users, course, links; the
  id_token's claims;
- :mod:`~tests.lti.keys`: RSA key pairs, key sets, checking a JWT against a JWKS URL, and a
  tiny JWKS server for tests that play the tool;
- :mod:`~tests.lti.oauth`: the tool's registration, the token endpoint and bearer checks;
- :mod:`~tests.lti.gradebook`: line items, scores, results and members;
- :mod:`~tests.lti.services`: AGS and NRPS over HTTP;
- :mod:`~tests.lti.deep_linking`: the settings of a deep-linking request, the check of the answer;
- :mod:`~tests.lti.server`: the HTTP front (records, refusals as answers, outages);
- :mod:`~tests.lti.pages`: self-submitting forms, and :func:`~tests.lti.pages.follow_forms` to
  walk them without a browser;
- :mod:`~tests.lti.lms`: the HTTP platform itself (named so as not to shadow the standard
  library's ``platform``).
"""

from tests.lti.claims import DROP, Context, LaunchPlan, MessageType, ResourceLink, Role, Scope, User
from tests.lti.deep_linking import DeepLinkResult
from tests.lti.gradebook import LineItem, Member, ReceivedScore
from tests.lti.keys import JwksServer, KeyPair, Refused
from tests.lti.lms import LaunchPost, Platform
from tests.lti.oauth import JWT_BEARER, ToolRegistration
from tests.lti.pages import follow_forms
from tests.lti.server import Outage, RecordedRequest

__all__ = [
    "DROP", "JWT_BEARER", "Context", "DeepLinkResult", "JwksServer", "KeyPair", "LaunchPlan",
    "LaunchPost", "LineItem", "Member", "MessageType", "Outage", "Platform", "ReceivedScore",
    "RecordedRequest", "Refused", "ResourceLink", "Role", "Scope", "ToolRegistration", "User",
    "follow_forms",
]
