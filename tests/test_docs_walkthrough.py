"""The docs' promise, kept true: an exercise written from docs/exercise-spec.md alone (one NumPy
function item, a tiny Keras CNN graded by a ``keras_structure`` and an ``accuracy`` item:
``tests/data/docs_walkthrough/source.ipynb``) goes through ``grader assign`` in the real
sandbox: the reference is built, the solution earns full marks and the template none."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from grader.cli import main

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

SOURCE = Path(__file__).parent / "data/docs_walkthrough/source.ipynb"


def test_the_walkthrough_notebook_goes_through_assign(tmp_path, capsys):
    code = main(["assign", str(SOURCE), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "walk_small: solution 14/14 [graded] ok" in err
    assert "walk_small: template 0/14 [graded] ok" in err
    assert "walk_small: ready (the solution earns full marks, the template none)" in err
    spec = tomllib.loads((tmp_path / "exercises/walk_small/exercise.toml").read_text("utf-8"))
    assert [item["id"] for item in spec["items"]] == ["sigmoid", "structure", "accuracy"]
    assert (tmp_path / "reference/walk_small/exports/accuracy.json").is_file()
