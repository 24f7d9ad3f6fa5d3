"""``flask --app service blobs move|check``: the blob stores from the command line
(``service.blobs``).

``move --to database`` copies every blob of the folder store (``UPLOAD_DIR``) into the
database store, ``move --to folder`` the other way, whatever ``BLOB_STORE`` says. It copies
and never deletes: the source stays whole until you remove it. Each blob is read whole, its
sha256 checked against its name, and written; a blob whose bytes do not hash to its name (a
corrupted file) is refused, named on stderr, and the command ends with exit status 1 after
copying the rest. Each copy is committed at once, so an interrupted move keeps what it copied,
and a move again copies only what is missing: moving twice is a no-op the second time.

``check`` lists the rows whose blob is not in the store ``BLOB_STORE`` names: submissions'
notebooks and graded runs' executed HTML; exit status 1 when there is any.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from sqlalchemy import select

from service.blobs import (
    BlobMissing,
    BlobStore,
    DatabaseBlobStore,
    FolderBlobStore,
    blob_store,
    sha256_of,
)
from service.extensions import db
from service.models import GradingRun, Submission
from service.settings import BLOB_STORES

#: At most this many missing rows are named one by one.
SHOWN = 20


def init_app(app: Flask) -> None:
    app.cli.add_command(blobs_group)


@dataclass
class Moved:
    """What a move did: blobs copied, found already there, refused (sha256 and why)."""

    copied: int = 0
    present: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)


def move_blobs(source: BlobStore, target: BlobStore) -> Moved:
    """Copy every blob of ``source`` missing from ``target``, checked, one commit each."""
    moved = Moved()
    there = set(target.hashes())
    for sha in list(source.hashes()):  # listed first: the loop commits
        if sha in there:
            moved.present += 1
            continue
        try:
            data = source.get(sha)
        except (BlobMissing, OSError) as exc:
            moved.refused.append((sha, f"not readable: {exc}"))
            continue
        found = sha256_of(data)
        if found != sha:
            moved.refused.append((sha, f"its {len(data)} bytes hash to {found}"))
            continue
        target.put(data)
        db.session.commit()
        moved.copied += 1
    db.session.commit()
    return moved


@click.group("blobs", help="Where uploaded notebooks and executed HTML are kept: the folder "
             "UPLOAD_DIR or the database (BLOB_STORE).")
def blobs_group() -> None:
    pass


@blobs_group.command("move", help="Copy every blob of the other store into the one named by "
                     "--to, each checked against its sha256; never deletes; safe to run again.")
@click.option("--to", "to", type=click.Choice(BLOB_STORES), required=True,
              help="the store to copy into")
@with_appcontext
def move_command(to: str) -> None:
    upgrade()
    folder = FolderBlobStore(current_app.config["UPLOAD_DIR"])
    database = DatabaseBlobStore(db.session)
    source, target = (folder, database) if to == "database" else (database, folder)
    click.echo(f"copying the blobs of {source.where} into {target.where}", err=True)
    moved = move_blobs(source, target)
    click.echo(f"{moved.copied} copied, {moved.present} already there, "
               f"{len(moved.refused)} refused")
    for sha, why in moved.refused:
        click.echo(f"refused {sha}: {why}", err=True)
    if moved.refused:
        raise click.ClickException(f"{len(moved.refused)} blobs refused (named above); "
                                   "the others are copied")
    if to != current_app.config["BLOB_STORE"]:
        click.echo(f"BLOB_STORE is {current_app.config['BLOB_STORE']}: set BLOB_STORE={to} on "
                   "the web and every worker to use the copies", err=True)


@blobs_group.command("check", help="Name the rows whose blob (uploaded notebook, executed "
                     "HTML) is missing from the store BLOB_STORE names.")
@with_appcontext
def check_command() -> None:
    upgrade()
    store = blob_store(current_app)
    stored = set(store.hashes())
    notebooks = db.session.execute(select(Submission.id, Submission.notebook_sha256)).all()
    pages = db.session.execute(select(GradingRun.id, GradingRun.executed_html_sha256)
                               .where(GradingRun.executed_html_sha256.is_not(None))).all()
    missing = [f"submission {row_id}: notebook {sha}" for row_id, sha in notebooks
               if sha not in stored]
    missing += [f"run {row_id}: executed HTML {sha}" for row_id, sha in pages
                if sha not in stored]
    click.echo(f"{len(notebooks)} notebooks and {len(pages)} executed notebooks referenced, "
               f"{len(missing)} missing from {store.where}")
    for line in missing[:SHOWN]:
        click.echo(line, err=True)
    if len(missing) > SHOWN:
        click.echo(f"... and {len(missing) - SHOWN} more", err=True)
    if missing:
        raise click.ClickException(f"{len(missing)} blobs missing from {store.where}")
