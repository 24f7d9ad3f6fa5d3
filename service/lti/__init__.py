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

The routes live in ``service.views.lti`` (``/lti/jwks``, ``/lti/canvas.json``; the login and
launch next) and the administrators' page in ``service.views.dashboard.lti``. Used launch
nonces are recorded by ``service.domain.lti_nonces``. docs/lti.md tells the whole story.
"""
