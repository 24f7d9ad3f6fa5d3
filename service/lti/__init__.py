"""LTI 1.3 (LTI Advantage): the service as a tool inside Moodle, Canvas and other platforms.

The protocol is pylti1p3's (OIDC login, launch validation, deep linking, grade and roster
services); this package binds it to the service:

- ``tool_conf``: pylti1p3's tool configuration read from the database. The registrations and
  deployments come from ``service.domain.lti_registrations``, the signing key from
  ``service.domain.lti_keys``; launches are refused for a platform or deployment not
  registered with ``flask --app service lti register``.
- ``launch_storage``: what pylti1p3 keeps between the login and the launch (nonce, state, the
  launch's claims) in the database, bound to the browser by pylti1p3's session-id cookie,
  instead of the Flask session (a ``SameSite=Lax`` cookie the platform's POST does not bring).
- ``ags``: one score sent to a platform's line item (Assignment and Grade Services), with
  timeouts, tokens that expire, and every outcome as data;
- ``passback``: grade passback's triggers (a run's outcome, an adjustment, an extension, a
  schedule change, a publish) putting scores in the outbox (``service.domain.lti_passback``,
  ``service.domain.lti_outbox``), sent by ``service.queue.lti_sender``;
- ``lms_settings``: what an LMS administrator pastes into the platform (the tool's URLs and
  scopes, Moodle's "External tool" fields, Canvas's developer key JSON), built from the
  service's public address.
- ``launch``: the OIDC login and the launch's validation (pylti1p3's, and the checks it
  lacks: ``aud``/``azp``, ``exp``/``iat``, a nonce used twice), each refusal a code.
- ``cookies``: the session cookie of a launched session, ``SameSite=None; Secure`` over HTTPS
  so the pages work inside the LMS's frame, and the origins allowed to frame them.
- ``roster``: the course's members read with Names and Roles and applied to the roster
  (``service.domain.lti_roster``), all or nothing.
- ``http``: the ``requests`` session with time limits every call to a platform goes through.

The routes live in ``service.views.lti`` (``/lti/jwks``, ``/lti/canvas.json``, ``/lti/login``,
``/lti/launch``, ``/lti/deep-link``) and the administrators' page in
``service.views.dashboard.lti``. Who a platform's user is here is
``service.domain.lti_accounts``; the links launched and where their scores go,
``service.domain.lti_links``; used launch nonces, ``service.domain.lti_nonces``. docs/lti.md
tells the whole story.
"""
