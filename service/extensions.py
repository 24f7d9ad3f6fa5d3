"""Flask extensions as module globals, bound to an app in :func:`service.create_app`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from flask_babel import Babel
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSession
from flask_wtf import CSRFProtect
from sqlalchemy import CursorResult, Result
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)

if TYPE_CHECKING:
    from flask_sqlalchemy.model import Model as _FlaskModel

    class Model(_FlaskModel, Base):
        """What ``db.Model`` is, spelled so a type checker can follow it: the class is made at
        run time from Flask-SQLAlchemy's mixins and ``Base``'s bases, which mypy cannot see
        through an attribute (python/mypy#8603)."""

else:
    Model = db.Model

#: A session as the domain and queue helpers take it: Flask-SQLAlchemy's ``db.session`` (a
#: scoped proxy that forwards every call to the current context's session) or a plain one.
DbSession: TypeAlias = Session | scoped_session[FlaskSession]


#: Where a background thread gets a database session without being handed the app: each call
#: opens one (in an app context of its own), removed when the block ends (:func:`sessions_of`).
Sessions: TypeAlias = Callable[[], AbstractContextManager[DbSession]]


def sessions_of(app: Any) -> Sessions:
    """The :data:`Sessions` of ``app`` (a Flask app: typed loosely, this module is imported by
    the app factory)."""

    @contextmanager
    def session() -> Iterator[DbSession]:
        with app.app_context():
            try:
                yield db.session
            finally:
                db.session.remove()

    return session


def rowcount(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed. ``Session.execute`` returns a
    ``CursorResult`` for them but is typed as returning a ``Result`` (sqlalchemy#12913)."""
    return cast(CursorResult[Any], result).rowcount

migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
