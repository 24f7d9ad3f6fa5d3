"""The service's gettext catalog (``service/translations``, domain ``messages``) outside a
request: the pages use it through Flask-Babel (``_("key")`` in the request's language), while
texts made where no request or app is at hand, such as a refusal of the course's rules
(``service.domain.course_rules.RulesError``) raised from the command line, the tests or the
domain, are formatted with :data:`MESSAGES` into a :class:`~grader.spec.Text` in both languages
and shown later in the reader's one.
"""

from __future__ import annotations

from pathlib import Path

from grader import Catalog

#: The gettext catalogs of the pages and the API (domain ``messages``, see ``babel.cfg``).
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
#: The service's catalog, read without Flask (the same files Flask-Babel reads).
MESSAGES = Catalog(TRANSLATIONS, "messages")
