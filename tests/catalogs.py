"""The gettext catalogs as the tests read them: the ``.po`` files themselves (what translators
edit and git holds) and the messages extracted from the code with the projects' own
``babel.cfg`` mappings, so a test sees what ``pybabel extract`` would."""

from __future__ import annotations

import re

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from grader.config import PROJECT_ROOT

SERVICE = PROJECT_ROOT / "service"
GRADER = PROJECT_ROOT / "grader"
#: (directory holding babel.cfg and the sources, catalog directory, domain) of each catalog.
DOMAINS = {
    "messages": (SERVICE, SERVICE / "translations"),
    "grader": (GRADER, GRADER / "locale"),
}
LANGUAGES = ("ja", "en")
PLACEHOLDER = re.compile(r"(?<!%)(?:%%)*(%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[sdifgr])")


def catalog(domain: str, lang: str) -> Catalog:
    """The ``.po`` catalog of ``domain`` in ``lang``."""
    directory = DOMAINS[domain][1]
    with (directory / lang / "LC_MESSAGES" / f"{domain}.po").open("rb") as source:
        return read_po(source, locale=lang, domain=domain)


def messages(domain: str, lang: str) -> dict[str, str]:
    """msgid -> msgstr of the catalog (without the header)."""
    return {m.id: m.string for m in catalog(domain, lang) if m.id}


def extracted(domain: str) -> dict[str, list[str]]:
    """Every message the sources of ``domain`` use -> where (file:line), extracted with the
    mapping and keywords of its ``babel.cfg``."""
    root = DOMAINS[domain][0]
    with (root / "babel.cfg").open(encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config)
    found: dict[str, list[str]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            root, method_map, options_map):
        if isinstance(message, str):
            found.setdefault(message, []).append(f"{filename}:{lineno}")
    return found


def placeholders(text: str) -> list[str]:
    """The ``%(name)s`` fields of a message with their conversions (``%(measured).4f``), sorted."""
    return sorted(match.group(1) for match in PLACEHOLDER.finditer(text))
