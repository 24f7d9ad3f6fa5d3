"""``flask --app service lti …``: the LTI 1.3 platforms the tool is registered with, and the
tool's keys (``service.domain.lti_registrations``, ``service.domain.lti_keys``).

``register`` adds a platform (or updates its URLs and adds deployments: running it again is
harmless), ``list`` and ``remove`` show and take them away, ``sync-roster`` reads the
courses' members from the platforms (Names and Roles), ``rotate-key`` makes a new signing
key and ``retire-keys`` stops publishing the keys replaced long enough ago; ``keys`` shows them.
A refusal is printed as ``Error: …`` with exit status 1 and changes nothing. No command prints
a private key.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict

import click
from flask import Flask
from flask.cli import with_appcontext
from flask_migrate import upgrade

from service.domain.lti_keys import key_states, retire_keys, rotate_key, signing_key
from service.domain.lti_registrations import (
    RegistrationError,
    list_platforms,
    register_platform,
    remove_platform,
)
from service.extensions import db
from service.lti.roster import sync_sources


def init_app(app: Flask) -> None:
    app.cli.add_command(lti_group)


@click.group("lti", help="LTI 1.3 (Moodle, Canvas): the platforms the tool is registered with, "
             "and the tool's signing keys (docs/lti.md).")
def lti_group() -> None:
    pass


def _refused(exc: RegistrationError) -> click.ClickException:
    db.session.rollback()
    return click.ClickException(str(exc))


def _stamp(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="seconds") + "Z"


@lti_group.command("register", help="Register a platform: its issuer (Moodle's 'Platform ID'), "
                   "the client id it gave the tool, one or more deployment ids and its "
                   "endpoints. Run again to add deployments or change URLs. URLs must be "
                   "https:// (http:// only for localhost and 127.0.0.1).")
@click.option("--issuer", required=True, metavar="URL", help="the platform's issuer (iss)")
@click.option("--client-id", required=True, metavar="ID", help="the tool's client id there")
@click.option("--deployment-id", "deployment_ids", required=True, multiple=True, metavar="ID",
              help="a deployment id (repeat for several)")
@click.option("--auth-login-url", required=True, metavar="URL",
              help="the platform's OIDC authentication request URL")
@click.option("--auth-token-url", required=True, metavar="URL",
              help="the platform's OAuth2 access token URL")
@click.option("--key-set-url", required=True, metavar="URL",
              help="the platform's public keyset (JWKS) URL")
@click.option("--audience", metavar="AUD", default=None,
              help="aud of the tool's token requests, when the platform wants another than "
              "the token URL")
@with_appcontext
def register(issuer: str, client_id: str, deployment_ids: tuple[str, ...], auth_login_url: str,
             auth_token_url: str, key_set_url: str, audience: str | None) -> None:
    upgrade()
    try:
        done = register_platform(db.session, issuer, client_id, deployment_ids, auth_login_url,
                                 auth_token_url, key_set_url, audience)
    except RegistrationError as exc:
        raise _refused(exc) from None
    reg = done.registration
    verb = "registered" if done.created else "updated"
    added = ", ".join(done.added_deployments) or "none"
    click.echo(f"{verb} {reg.issuer} client id {reg.client_id}: deployments "
               f"{', '.join(reg.deployment_ids)} (added: {added})")
    signing_key(db.session)  # the tool's key, made on first use


@lti_group.command("list", help="The registered platforms and their deployments.")
@click.option("--json", "as_json", is_flag=True, help="a JSON array")
@with_appcontext
def list_command(as_json: bool) -> None:
    upgrade()
    platforms = list_platforms(db.session)
    if as_json:
        click.echo(json.dumps([{**asdict(p), "deployment_ids": list(p.deployment_ids)}
                               for p in platforms], indent=2, ensure_ascii=False))
        return
    if not platforms:
        click.echo("no platform registered")
    for p in platforms:
        click.echo(f"{p.issuer} client_id={p.client_id} "
                   f"deployments={','.join(p.deployment_ids)}")
        click.echo(f"  auth_login_url={p.auth_login_url}")
        click.echo(f"  auth_token_url={p.auth_token_url}")
        click.echo(f"  key_set_url={p.key_set_url}")
        if p.audience:
            click.echo(f"  audience={p.audience}")


@lti_group.command("remove", help="Remove a platform's registrations (all of the issuer, one "
                   "client id's, or only the given deployments). Its launches are refused "
                   "from then on.")
@click.option("--issuer", required=True, metavar="URL")
@click.option("--client-id", metavar="ID", default=None, help="only this registration")
@click.option("--deployment-id", "deployment_ids", multiple=True, metavar="ID",
              help="only this deployment (repeat for several)")
@with_appcontext
def remove(issuer: str, client_id: str | None, deployment_ids: tuple[str, ...]) -> None:
    upgrade()
    try:
        removed = remove_platform(db.session, issuer.strip(), client_id, deployment_ids)
    except RegistrationError as exc:
        raise _refused(exc) from None
    for line in removed:
        click.echo(f"removed {line}")


@lti_group.command("keys", help="The tool's keys: which signs, which are still published.")
@with_appcontext
def keys() -> None:
    upgrade()
    signing_key(db.session)
    for key in key_states(db.session):
        state = ("signing" if key.signing else
                 f"retired {_stamp(key.retired_at)}" if key.retired_at else
                 f"published, replaced {_stamp(key.replaced_at)}")
        click.echo(f"{key.kid} created {_stamp(key.created_at)} {state}")


@lti_group.command("rotate-key", help="Make a new signing key. The previous keys stay "
                   "published at /lti/jwks (platforms cache the key set) until retire-keys.")
@with_appcontext
def rotate() -> None:
    upgrade()
    key = rotate_key(db.session)
    click.echo(f"new signing key {key.kid}; the previous keys stay published until "
               "`flask --app service lti retire-keys`")


@lti_group.command("retire-keys", help="Stop publishing the keys replaced more than DAYS "
                   "days ago and erase their private halves (never the signing key).")
@click.option("--older-than", "days", type=click.FloatRange(min=0), default=7.0,
              show_default=True, metavar="DAYS")
@with_appcontext
def retire(days: float) -> None:
    upgrade()
    retired = retire_keys(db.session, dt.timedelta(days=days))
    if not retired:
        click.echo(f"no key was replaced more than {days:g} days ago")
    for kid in retired:
        click.echo(f"retired {kid}")


@lti_group.command("sync-roster", help="Read the members of every course launched so far "
                   "(Names and Roles) and link its learners to students (made when new). A "
                   "course whose platform fails is left unchanged and named; exit status 1.")
@with_appcontext
def sync_roster() -> None:
    upgrade()
    results = sync_sources(db.session)
    if not results:
        click.echo("no course to sync: no launch has brought a Names and Roles endpoint yet")
    failed = False
    for result in results:
        where = f"{result.source.issuer} context {result.source.context_id or '-'}"
        if result.counts is None:
            failed = True
            click.echo(f"{where}: not synced, nothing changed: {result.error}", err=True)
        else:
            c = result.counts
            click.echo(f"{where}: {c.created} students created, {c.linked} linked or "
                       f"updated, {c.skipped} left out (staff, inactive)")
    if failed:
        raise SystemExit(1)
