"""The dashboard's SVG charts (``service.views.plots``) and the numbers behind them
(``service.domain.stats``, on a real SQLite file migrated by Alembic, with hand-made rows)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from grader.config import GraderConfig
from service.domain.stats import accuracy_edges, exercise_stats, score_edges, submission_series
from service.extensions import db
from service.models import GradingRun, ItemScore, Student, Submission
from service.views import plots
from tests.browser.preview import add_plots_preview, seed_class
from tests.catalogs import messages

SVG = "{http://www.w3.org/2000/svg}"
EDGES = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
LABELS = dict(title="Scores", x_label="Score", y_label="Students", empty="Nothing yet")
T0 = dt.datetime(2025, 5, 20, 9, 0)


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg"
    return root


def bars(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]


def texts(root: ET.Element) -> list[str]:
    return ["".join(node.itertext()) for node in root.iter(f"{SVG}text")]


def assert_accessible(root: ET.Element, title: str) -> None:
    assert root.get("role") == "img"
    assert root.get("aria-label") == title
    assert root.find(f"{SVG}title").text == title
    desc = root.find(f"{SVG}desc")
    assert desc is not None and desc.get("id") == root.get("aria-describedby")
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"


# --- histogram ----------------------------------------------------------------------------


def test_bin_counts_put_each_value_in_one_bin_and_the_top_edge_in_the_last():
    assert plots.bin_counts([0, 9.99, 10, 55, 90, 100, 100], EDGES) == [2, 1, 0, 0, 0, 1, 0,
                                                                        0, 0, 3]
    assert plots.bin_counts([-1, 101], EDGES) == [0] * 10  # outside the edges: not counted


def test_histogram_draws_one_bar_per_bin_with_heights_following_the_counts():
    values = [36, 36, 38, 64, 100, 100, 95, 12]  # counts: 10-20: 1, 30-40: 3, 60-70: 1, 90-100: 3
    root = parse(plots.histogram(values, EDGES, **LABELS))
    assert_accessible(root, "Scores")
    drawn = bars(root)
    assert len(drawn) == 10
    counts = [int(b.get("data-count")) for b in drawn]
    assert counts == [0, 1, 0, 3, 0, 0, 1, 0, 0, 3]
    heights = [float(b.get("height")) for b in drawn]
    tallest = max(heights)
    assert [i for i, h in enumerate(heights) if h == tallest] == [3, 9]  # the most common bins
    assert heights[1] == pytest.approx(tallest / 3, abs=0.1)
    assert heights[0] == 0
    bottoms = {round(float(b.get("y")) + float(b.get("height")), 1) for b in drawn}
    assert len(bottoms) == 1  # every bar stands on the axis
    xs = [float(b.get("x")) for b in drawn]
    assert xs == sorted(xs)  # bins from left to right
    # the counts are written over the bars, and the data is in the description
    assert texts(root).count("3") >= 2
    assert "30–40: 3" in root.find(f"{SVG}desc").text


def test_histogram_y_axis_reaches_the_largest_count():
    root = parse(plots.histogram([55] * 7, EDGES, **LABELS))
    assert plots.nice_ticks(7) == [0, 2, 4, 6, 8]
    assert {"0", "2", "4", "6", "8"} <= set(texts(root))
    (bar,) = [b for b in bars(root) if b.get("data-count") == "7"]
    assert 0 < float(bar.get("height")) < 320


def test_histogram_places_a_threshold_marker_inside_its_bin():
    edges = [0.0, 0.9, 0.95, 0.97, 0.98, 1.0]
    root = parse(plots.histogram([0.975, 0.99], edges, **LABELS, tick_format=".2f",
                                 marker=0.975, marker_label="Full points from"))
    drawn = bars(root)
    (marker,) = [line for line in root.iter(f"{SVG}line") if line.get("class") == "marker"]
    x = float(marker.get("x1"))
    bin_3 = drawn[3]  # 0.97-0.98: the marker sits halfway through it
    left, width = float(bin_3.get("x")), float(bin_3.get("width"))
    assert left < x < left + width
    assert x == pytest.approx(left + width / 2, abs=3)
    assert "Full points from 0.975" in texts(root)
    assert "0.97" in texts(root) and "0.98" in texts(root)  # edge labels use tick_format


def test_text_is_escaped_and_stays_text():
    nasty = '<script>alert("x")</script> & \'q\''
    root = parse(plots.histogram([1, 2], [0, 5], title=nasty, x_label=nasty, y_label=nasty,
                                 empty=nasty))
    assert not [node for node in root.iter() if node.tag.endswith("script")]
    assert root.get("aria-label") == nasty
    assert root.find(f"{SVG}title").text == nasty
    assert nasty in texts(root)

    rows = [(nasty, 0.5, "1/2")]
    svg = plots.pass_rates(rows, title="Items", empty="none")
    assert "<script>" not in svg
    assert nasty in texts(parse(svg))


def test_histogram_without_values_shows_the_empty_state():
    for values in ([], [150.0]):  # nothing, or nothing inside the edges
        root = parse(plots.histogram(values, EDGES, **LABELS))
        assert bars(root) == []
        assert [r for r in root.iter(f"{SVG}rect") if r.get("class") == "empty"]
        assert "Nothing yet" in texts(root)
        assert "Nothing yet" in root.find(f"{SVG}desc").text
    with pytest.raises(ValueError):
        plots.histogram([1], [0], **LABELS)


# --- pass rates ---------------------------------------------------------------------------


def test_pass_rate_bars_are_as_long_as_their_share():
    rows = [("Convolution 1", 1.0, "4/4"), ("Pooling 3", 0.25, "1/4"), ("Nobody yet", None),
            ("Conv layer", 0.5, "2/4")]
    root = parse(plots.pass_rates(rows, title="Items", empty="none", subtitle="4 students"))
    assert_accessible(root, "Items")
    drawn = bars(root)
    assert [float(b.get("data-rate")) for b in drawn] == [1.0, 0.25, 0.5]  # no bar for None
    widths = [float(b.get("width")) for b in drawn]
    assert widths[1] == pytest.approx(widths[0] / 4, abs=0.1)
    assert widths[2] == pytest.approx(widths[0] / 2, abs=0.1)
    ys = [float(b.get("y")) for b in drawn]
    assert ys == sorted(ys)  # in the order given, top to bottom
    written = texts(root)
    assert {"100% (4/4)", "25% (1/4)", "–", "50% (2/4)", "Convolution 1"} <= set(written)
    assert "Pooling 3: 25% (1/4)" in root.find(f"{SVG}desc").text


def test_long_item_titles_are_cut_on_the_chart_but_kept_whole_in_tooltip_and_description():
    title = "畳み込み層 Conv (Heの初期化, 畳み込み+バイアス, 活性化) " * 3
    root = parse(plots.pass_rates([(title, 0.5)], title="Items", empty="none"))
    shown = [text for text in texts(root) if text.startswith("畳み込み層")]
    assert len(shown) == 1 and shown[0].endswith("…") and len(shown[0]) < len(title)
    tips = ["".join(t.itertext()) for t in root.iter(f"{SVG}title")]
    assert any(title in tip for tip in tips)
    assert title in root.find(f"{SVG}desc").text


def test_pass_rates_with_no_rows_or_no_graded_student_show_the_empty_state():
    for rows in ([], [("Convolution 1", None), ("Pooling 1", None)]):
        root = parse(plots.pass_rates(rows, title="Items", empty="No graded run yet"))
        assert bars(root) == []
        assert "No graded run yet" in texts(root)


# --- submissions over time ----------------------------------------------------------------


def hourly(counts: list[int]) -> list[tuple[dt.datetime, int]]:
    return [(T0 + dt.timedelta(hours=h), n) for h, n in enumerate(counts)]


def test_time_series_draws_a_column_per_bucket_and_the_deadline_where_it_falls():
    series = hourly([2, 0, 5, 1])
    root = parse(plots.time_series(series, step=dt.timedelta(hours=1), title="Submissions",
                                   x_label="Time (UTC)", y_label="Submissions", empty="none",
                                   deadline=T0 + dt.timedelta(hours=2, minutes=30),
                                   deadline_label="Deadline"))
    assert_accessible(root, "Submissions")
    drawn = bars(root)
    assert [int(b.get("data-count")) for b in drawn] == [2, 0, 5, 1]
    heights = [float(b.get("height")) for b in drawn]
    assert heights.index(max(heights)) == 2
    assert heights[0] == pytest.approx(max(heights) * 2 / 5, abs=0.1)
    (marker,) = [line for line in root.iter(f"{SVG}line") if line.get("class") == "marker"]
    x = float(marker.get("x1"))
    third, fourth = drawn[2], drawn[3]
    assert float(third.get("x")) < x < float(fourth.get("x")) + float(fourth.get("width"))
    assert "Deadline" in texts(root)
    assert {"09:00", "05-20"} <= set(texts(root))  # hour labels, the date under the first
    desc = root.find(f"{SVG}desc").text
    assert "2025-05-20 11:00: 5" in desc and "10:00" not in desc  # empty hours left out
    assert "Deadline 2025-05-20 11:30" in desc


def test_time_series_stretches_to_a_deadline_after_the_last_submission():
    series = [(dt.datetime(2025, 5, d), 3) for d in (1, 2, 3)]
    root = parse(plots.time_series(series, step=dt.timedelta(days=1), title="Per day",
                                   x_label="Date", y_label="n", empty="none",
                                   deadline=dt.datetime(2025, 5, 10, 12), deadline_label="締切"))
    drawn = bars(root)
    (marker,) = [line for line in root.iter(f"{SVG}line") if line.get("class") == "marker"]
    last_bar_right = float(drawn[-1].get("x")) + float(drawn[-1].get("width"))
    assert last_bar_right < float(marker.get("x1")) <= int(root.get("width"))
    assert "05-01" in texts(root) and "締切" in texts(root)


def test_time_series_without_submissions_shows_the_empty_state():
    root = parse(plots.time_series([], step=dt.timedelta(hours=1), title="Submissions",
                                   x_label="t", y_label="n", empty="No submissions yet",
                                   deadline=T0, deadline_label="Deadline"))
    assert bars(root) == []
    assert "No submissions yet" in texts(root)


# --- stats on a real database -------------------------------------------------------------


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The statistics on a SQLite file (``tests/service/conftest.py``'s factory)."""
    return f"sqlite:///{tmp_path / 'plots.db'}"


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The service with the charts' preview page (``tests/browser/preview.py``)."""
    return add_plots_preview(make_app())


def add_student(student_id: str) -> Student:
    student = Student(student_id=student_id, name=student_id.title(),
                      token_hash=hashlib.sha256(student_id.encode()).hexdigest())
    db.session.add(student)
    return student


def add_submission(student: Student, created: dt.datetime,
                   exercise: str = "chap06_cnn") -> Submission:
    submission = Submission(student=student, exercise=exercise, filename="hw.ipynb", size=10,
                            notebook_sha256=hashlib.sha256(
                                f"{student.student_id}{created}".encode()).hexdigest(),
                            created_at=created)
    db.session.add(submission)
    return submission


def add_run(submission: Submission, state: str = "graded", score: float | None = None,
            accuracy: float | None = None, items: dict[str, str] | None = None) -> GradingRun:
    run = GradingRun(submission=submission, state=state, score=score,
                     max_score=100.0 if score is not None else None,
                     measured_accuracy=accuracy, queued_at=submission.created_at)
    for position, (item_id, item_status) in enumerate((items or {}).items()):
        run.items.append(ItemScore(position=position, item_id=item_id, status=item_status,
                                   score=6.0 if item_status == "correct" else 0.0,
                                   max_score=6.0))
    db.session.add(run)
    db.session.flush()  # ids in insertion order: the tie-break of equal scores
    return run


ALL_CORRECT = {item: "correct" for item in (
    "conv1", "conv2", "conv3", "pool1", "pool2", "pool3", "conv_layer", "pooling_layer",
    "dense_layer", "model", "accuracy")}


@pytest.fixture
def classroom(app: Flask) -> Flask:
    """alice: 36 then 100 (best 100); bob: 64; erin: 50 twice (the later run is her best);
    carol: only a failed run; dave: only a queued one; zoe: another exercise only."""
    with app.app_context():
        alice, bob, carol, dave, erin, zoe = (add_student(s) for s in (
            "alice", "bob", "carol", "dave", "erin", "zoe"))
        first = add_submission(alice, T0 + dt.timedelta(minutes=10))
        add_run(first, score=36, items={k: "correct" for k in list(ALL_CORRECT)[:6]}
                | {"conv_layer": "not_reached"})
        add_run(add_submission(alice, T0 + dt.timedelta(minutes=50)), score=100, accuracy=0.981,
                items=ALL_CORRECT)
        add_run(add_submission(bob, T0 + dt.timedelta(hours=1, minutes=5)), score=64,
                accuracy=0.95,
                items=ALL_CORRECT | {"conv_layer": "incorrect", "accuracy": "partial"})
        erin_submission = add_submission(erin, T0 + dt.timedelta(hours=3, minutes=30))
        add_run(erin_submission, score=50, accuracy=0.5,  # her first run: not her best
                items={"conv1": "correct", "conv2": "correct", "conv_layer": "correct"})
        add_run(erin_submission, score=50, accuracy=0.6,
                items={"conv1": "correct", "conv2": "partial", "conv_layer": "incorrect",
                       "accuracy": "incorrect", "bonus": "correct"})
        add_run(add_submission(carol, T0 + dt.timedelta(hours=3, minutes=31)), state="failed")
        add_run(add_submission(dave, T0 + dt.timedelta(hours=3, minutes=59)), state="queued")
        add_run(add_submission(zoe, T0, exercise="chap07_rnn"), score=99, accuracy=0.99,
                items=ALL_CORRECT)
        db.session.commit()
    return app


def test_stats_count_each_student_once_through_their_best_run(classroom: Flask):
    with classroom.app_context():
        stats = exercise_stats("chap06_cnn")
    assert stats["counts"] == {"students": 5, "graded": 3, "failed": 1, "pending": 1,
                               "submissions": 6}
    assert stats["scores"] == [50, 64, 100]
    assert stats["accuracies"] == [0.6, 0.95, 0.981]  # erin's later run, not her 0.5
    assert stats["max_score"] == 100
    assert stats["score_edges"] == EDGES
    spec = GraderConfig.from_env().exercise("chap06_cnn").accuracy
    assert spec is not None and stats["accuracy_threshold"] == spec.threshold  # from the spec
    assert stats["title"]["en"].startswith("Lecture 6")


def test_item_pass_rates_read_the_best_runs_in_spec_order(classroom: Flask):
    with classroom.app_context():
        items = {item["id"]: item for item in exercise_stats("chap06_cnn")["items"]}
    assert list(items)[:3] == ["conv1", "conv2", "conv3"]
    assert list(items)[-1] == "bonus"  # scored by a run, unknown to the spec: listed last
    assert items["bonus"]["title"] == {"ja": "bonus", "en": "bonus"}
    assert items["conv1"]["title"]["en"] == "Convolution 1 (stride 1, VALID)"
    assert (items["conv1"]["passed"], items["conv1"]["students"]) == (3, 3)
    assert items["conv1"]["rate"] == 1.0
    assert items["conv2"]["passed"] == 2  # erin's best run is only partly right
    assert items["conv_layer"]["passed"] == 1  # erin's earlier correct run does not count
    assert items["accuracy"]["rate"] == pytest.approx(1 / 3)
    assert items["pool3"]["passed"] == 2  # erin's best run has no pool3 at all
    assert items["accuracy"]["points"] == 24


def test_submissions_are_counted_per_hour_with_empty_hours_kept(classroom: Flask):
    with classroom.app_context():
        submissions = exercise_stats("chap06_cnn")["submissions"]
    assert submissions["bucket"] == "hour"
    assert submissions["step"] == dt.timedelta(hours=1)
    assert submissions["series"] == [(T0, 2), (T0 + dt.timedelta(hours=1), 1),
                                     (T0 + dt.timedelta(hours=2), 0),
                                     (T0 + dt.timedelta(hours=3), 3)]


def test_a_long_span_is_counted_per_day():
    created = [T0, T0 + dt.timedelta(hours=2), T0 + dt.timedelta(days=5, hours=3)]
    series = submission_series(Counter(created))
    assert series["bucket"] == "day" and series["step"] == dt.timedelta(days=1)
    day = T0.replace(hour=0)
    assert series["series"][0] == (day, 2)
    assert series["series"][-1] == (day + dt.timedelta(days=5), 1)
    assert len(series["series"]) == 6
    assert submission_series(Counter())["series"] == []


def test_bin_edges(app: Flask):
    from grader.spec import load_exercise

    config = app.config["GRADER"]
    exercise = load_exercise(config.exercises_root / "chap06_cnn", config.reference_root)
    edges = accuracy_edges(exercise)
    assert edges[:3] == [0.0, 0.9, 0.91] and edges[-1] == 1.0 and len(edges) == 12
    assert score_edges(24) == [0, 2.4, 4.8, 7.2, 9.6, 12, 14.4, 16.8, 19.2, 21.6, 24]


def test_stats_of_an_exercise_nobody_submitted(app: Flask):
    with app.app_context():
        stats = exercise_stats("chap06_cnn")
    assert stats["counts"] == {"students": 0, "graded": 0, "failed": 0, "pending": 0,
                               "submissions": 0}
    assert stats["scores"] == [] and stats["accuracies"] == []
    assert all(item["rate"] is None for item in stats["items"])
    assert stats["submissions"]["series"] == []


# --- the partial --------------------------------------------------------------------------


@pytest.mark.parametrize("lang, heading", [("ja", "得点の分布"), ("en", "Scores")])
def test_the_partial_renders_four_accessible_charts(app: Flask, lang: str, heading: str):
    seed_class(app, students=12)
    html = app.test_client().get(f"/_test/plots/chap06_cnn?lang={lang}").get_data(as_text=True)
    svgs = [part.split("</svg>")[0] + "</svg>" for part in html.split("<svg")[1:]]
    roots = [parse("<svg" + svg) for svg in svgs]
    assert len(roots) == 4
    assert roots[0].get("aria-label") == heading
    assert [bool(bars(root)) for root in roots] == [True, True, True, True]
    with app.app_context():
        stats = exercise_stats("chap06_cnn")
    assert sum(int(b.get("data-count")) for b in bars(roots[0])) == len(stats["scores"])
    assert len(bars(roots[2])) == len(stats["items"])
    assert "<script" not in html and "style=" not in html  # nothing the page's CSP blocks


def test_the_partial_with_no_data_shows_four_empty_states(app: Flask):
    html = app.test_client().get("/_test/plots/chap06_cnn?lang=en").get_data(as_text=True)
    assert html.count("No data yet") >= 4 and 'class="bar"' not in html


def test_every_text_of_the_partial_is_in_the_catalog_in_both_languages():
    partial = Path(plots.__file__).parents[1] / "templates" / "dashboard" / "_plots.html"
    keys = set(re.findall(r"""["'](plots\.[\w.]+)["']""", partial.read_text(encoding="utf-8")))
    assert {"plots.submissions.title_day", "plots.submissions.x_hour"} <= keys
    for lang in ("ja", "en"):  # the stylesheet is no text
        assert sorted(keys - set(messages("messages", lang)) - {"plots.css"}) == []
