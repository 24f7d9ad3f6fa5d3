"""The executed notebook shown to the student is sanitised (service/notebook_html.py)."""

from __future__ import annotations

import time

import nbformat
import pytest

from service.notebook_html import render_notebook_html, sanitize_html

NASTY = (
    '<h2 onclick="steal()">Result</h2>'
    '<script>alert("x")</script>'
    '<img src="x.png" onerror="steal()" alt="plot">'
    '<a href="javascript:steal()">link</a><a href="https://example.org/">ok</a>'
    '<form action="/logout"><input name="token"></form>'
    '<iframe src="https://evil.example/"></iframe><frame src="x"><object data="x"></object>'
    '<p style="color: red; position: fixed; background-image: url(https://evil.example/)">'
    'kept</p>'
    '<table><tr><td colspan="2" style="text-align: right">1</td></tr></table>'
)


def test_scripts_handlers_forms_frames_and_css_are_removed():
    html = sanitize_html(NASTY)
    lowered = html.lower()
    for banned in ("<script", "alert(", "onclick", "onerror", "javascript:", "<form", "<input",
                   "<iframe", "<frame", "<object", "position", "background-image", "evil"):
        assert banned not in lowered, banned
    assert "<h2>Result</h2>" in html
    assert 'src="x.png"' in html and 'alt="plot"' in html
    assert 'href="https://example.org/"' in html
    assert "color:red" in html.replace(" ", "") and "kept" in html
    assert 'colspan="2"' in html and "text-align" in html


def test_a_notebook_output_displaying_html_is_sanitised():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("display(HTML(...))")
    cell.outputs = [nbformat.v4.new_output(
        "display_data", data={"text/html": NASTY, "text/plain": "<HTML>"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), cell]
    html = render_notebook_html(nbformat.writes(nb))
    assert "Title" in html and "kept" in html
    assert "<script" not in html.lower() and "onerror" not in html and "<iframe" not in html


def _cells(count: int) -> str:
    return nbformat.writes(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell(f"# part {k}") for k in range(count)]))


@pytest.mark.processes
def test_bounded_rendering_refuses_a_notebook_over_the_cell_cap_without_rendering():
    """60,000 empty cells took 3.3 ms each: over the cap nothing is rendered at all."""
    from service.notebook_html import TOO_LARGE, render_bounded

    rendered = render_bounded(_cells(60_000), max_bytes=64 * 1024 * 1024, max_cells=2000,
                              seconds=60)
    assert (rendered.html, rendered.omitted, rendered.cells) == (None, TOO_LARGE, 60_000)


def test_bounded_rendering_refuses_a_notebook_over_the_size_cap():
    from service.notebook_html import TOO_LARGE, render_bounded

    rendered = render_bounded(_cells(3), max_bytes=100, max_cells=2000, seconds=60)
    assert rendered.omitted == TOO_LARGE and rendered.html is None


def test_bounded_rendering_stops_at_its_deadline():
    """The child process cannot even start in a millisecond: it is killed, no HTML."""
    from service.notebook_html import TOO_SLOW, render_bounded

    rendered = render_bounded(_cells(3), max_bytes=1024 * 1024, max_cells=2000, seconds=0.001)
    assert rendered.omitted == TOO_SLOW and rendered.html is None


@pytest.mark.processes
def test_bounded_rendering_within_the_caps_is_the_sanitised_html():
    from service.notebook_html import render_bounded

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "# Title\n<script>alert(1)</script>")])
    rendered = render_bounded(nbformat.writes(nb), max_bytes=1024 * 1024, max_cells=10,
                              seconds=120)
    assert rendered.omitted is None and rendered.html is not None
    assert "Title" in rendered.html and "<script" not in rendered.html
    assert rendered.html == render_notebook_html(nbformat.writes(nb))


@pytest.mark.processes
def test_each_render_uses_a_child_started_ahead_and_only_once():
    """The spare child was started before the notebook came (its imports done); it renders
    one notebook and a new spare takes its place, so no notebook meets another's child."""
    from service import notebook_html

    renderer = notebook_html.SpareRenderer().start()
    spare = renderer.spare
    assert spare is not None
    time.sleep(3)  # its imports and template warm-up done meanwhile
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# One")])
    rendered = notebook_html.render_bounded(nbformat.writes(nb), max_bytes=1024 * 1024,
                                            max_cells=10, seconds=120,
                                            take_child=renderer.take)
    assert rendered.html is not None and "One" in rendered.html
    assert spare.returncode == 0  # it rendered, then ended
    assert renderer.spare is not None and renderer.spare is not spare
    renderer.close()
    assert renderer.spare is None


# --- issue 17 part 3: the render child bounded as a run is ----------------------------------

def _long_output(lines: int) -> str:
    return nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "x", outputs=[nbformat.v4.new_output("stream", name="stdout", text="a\n" * lines)])]))


@pytest.mark.processes
def test_a_render_child_past_its_memory_ends_with_no_html_and_runs_below_the_runs():
    import os

    from service import notebook_html
    from service.notebook_html import RENDER_ERROR, RENDER_NICE, render_bounded

    renderer = notebook_html.SpareRenderer().start()
    assert renderer.spare is not None
    assert os.getpriority(os.PRIO_PROCESS, renderer.spare.pid) == RENDER_NICE
    source = _long_output(600_000)
    starved = render_bounded(source, max_bytes=64 * 1024 * 1024, max_cells=10, seconds=120,
                             memory_bytes=120 * 1024 * 1024, take_child=renderer.take)
    assert starved.omitted == RENDER_ERROR and starved.html is None
    fed = render_bounded(source, max_bytes=64 * 1024 * 1024, max_cells=10, seconds=120)
    assert fed.omitted is None and fed.html is not None  # the same notebook, the default room
    renderer.close()


@pytest.mark.processes
def test_a_pathological_executed_notebook_within_the_caps_is_not_rendered_not_waited_for():
    """2,000 cells of 300 lines each (under the caps) took the renderer minutes and 4 GiB:
    the worker's render ahead ends at its deadline with the "too slow" note."""
    from service.notebook_html import TOO_SLOW
    from service.queue.rendering import RenderAhead, RenderCaps

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1\n" * 300)
                                         for _ in range(2000)])
    caps = RenderCaps(max_bytes=64 * 1024 * 1024, max_cells=2000, seconds=3.0)
    began = time.monotonic()
    with RenderAhead(caps) as render:
        render.start(nb)
        timed = render.result(nbformat.writes(nb))
    assert timed.rendered.omitted == TOO_SLOW and timed.rendered.html is None
    assert time.monotonic() - began < 60  # killed at its deadline, not rendered for minutes
