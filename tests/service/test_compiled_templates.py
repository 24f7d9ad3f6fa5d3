"""The service tests' apps share their compiled templates (``tests/service/compiled_templates.py``):
a second app renders a page without compiling it, and the cache never serves a page's old code."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from jinja2 import DictLoader, Environment

from tests.service.compiled_templates import CompiledTemplates


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_second_app_renders_a_page_the_first_compiled_without_compiling_it(
        make_app: Any, compiled_templates: CompiledTemplates,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first: Flask = make_app()
    assert first.test_client().get("/login").status_code == 200
    assert first.jinja_env.bytecode_cache is compiled_templates and len(compiled_templates) > 0

    second: Flask = make_app()
    compiled: list[str | None] = []
    compile_ = second.jinja_env.compile

    def counted(source: Any, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        compiled.append(name)
        return compile_(source, name, *args, **kwargs)

    monkeypatch.setattr(second.jinja_env, "compile", counted)
    page = second.test_client().get("/login")
    assert page.status_code == 200 and b"<form" in page.data
    assert compiled == []


def test_a_changed_template_is_compiled_again_not_taken_from_the_cache() -> None:
    cache = CompiledTemplates()
    old = Environment(loader=DictLoader({"page": "old {{ n }}"}), bytecode_cache=cache)
    new = Environment(loader=DictLoader({"page": "new {{ n }}"}), bytecode_cache=cache)
    assert old.get_template("page").render(n=1) == "old 1"
    assert new.get_template("page").render(n=2) == "new 2"


def test_an_environment_with_other_extensions_compiles_its_own_code() -> None:
    cache = CompiledTemplates()
    source = {"page": "{{ 'a' ~ 'b' }}"}
    plain = Environment(loader=DictLoader(source), bytecode_cache=cache)
    extended = Environment(loader=DictLoader(source), bytecode_cache=cache,
                           extensions=["jinja2.ext.do"])
    assert plain.get_template("page").render() == extended.get_template("page").render() == "ab"
    assert len(cache) == 2
