"""Per-cell time budgets from the reference's timings (``grader/budgets.py``), and the plan
that carries them to the runner."""

from __future__ import annotations

import pytest

from grader.budgets import (
    FLOOR,
    CellTiming,
    budget_for,
    cell_budgets,
    read_timings,
    segment_seconds,
)
from grader.kernel.plan import RunPlan
from grader.reference import reference_timings

#: A reference in the shape of chap06_cnn's: set-up, two quick graded cells, an ungraded cell
#: that loads data slowly, the training cell, a closing cell.
TIMINGS = [
    CellTiming(1, (), 5.0),          # imports
    CellTiming(3, ("conv1",), 0.1),
    CellTiming(5, ("conv2",), 0.2),
    CellTiming(7, (), 20.0),         # loads the data set
    CellTiming(9, ("accuracy",), 120.0),
    CellTiming(11, (), 0.0),
]


def test_budget_is_three_times_the_reference_plus_30_s_between_the_floor_and_the_ceiling():
    assert budget_for(0.0, 900) == FLOOR == 60
    assert budget_for(10.0, 900) == 60  # 3 x 10 + 30 = 60
    assert budget_for(120.0, 900) == 390
    assert budget_for(400.0, 900) == 900  # the exercise's cell_timeout caps it
    assert budget_for(0.0, 20) == 20  # ... even below the floor


def test_segments_end_at_graded_cells_and_take_their_longest_cell():
    assert segment_seconds(TIMINGS) == {"conv1": 5.0, "conv2": 0.2, "accuracy": 120.0,
                                        "*": 0.0}


def test_a_submission_like_the_reference_gets_the_references_budgets():
    code = [1, 3, 5, 7, 9, 11]
    budgets = cell_budgets(code, {"conv1": 3, "conv2": 5, "accuracy": 9}, TIMINGS, 900)
    assert budgets == {1: 60, 3: 60, 5: 60, 7: 390, 9: 390, 11: 60}


def test_cells_a_student_added_get_the_budget_of_the_graded_cell_they_precede():
    """Training split over two cells before the graded one keeps the training's minutes; a
    loop added after conv1 gets conv2's minute; a cell after the last graded one, the tail's."""
    code = [1, 2, 4, 6, 8, 10, 12, 14]
    graded = {"conv1": 2, "conv2": 6, "accuracy": 12}
    budgets = cell_budgets(code, graded, TIMINGS, 900)
    assert budgets[4] == 60 and budgets[6] == 60
    assert budgets[8] == budgets[10] == budgets[12] == 390
    assert budgets[14] == 60


def test_an_item_the_submission_lacks_hands_its_segment_to_the_next_one():
    """No cell found for the accuracy item: its training code is somewhere after conv2, so the
    cells there keep the training's budget rather than the tail's minute."""
    budgets = cell_budgets([1, 3, 5, 7, 9], {"conv1": 3, "conv2": 5}, TIMINGS, 900)
    assert budgets[7] == budgets[9] == 390


def test_without_timings_every_cell_gets_the_ceiling():
    assert cell_budgets([0, 2], {"conv1": 2}, None, 900) == {0: 900, 2: 900}


@pytest.mark.parametrize("document", [
    {},
    {"cell_seconds": "fast"},
    {"cell_seconds": [{"index": 1, "items": [], "seconds": -1}]},
    {"cell_seconds": [{"index": "1", "items": [], "seconds": 1}]},
    {"cell_seconds": [{"index": 1, "items": [3], "seconds": 1}]},
    {"cell_seconds": []},
])
def test_unreadable_timings_give_none(document):
    assert read_timings(document) is None


def test_the_committed_reference_records_every_code_cell(exercise, solution_nb):
    """``grader build-reference`` recorded the seconds of each code cell of the solution, and
    the training cell (the accuracy item's) is the long one."""
    timings = reference_timings(exercise)
    assert timings is not None
    code = [i for i, c in enumerate(solution_nb.cells) if c.cell_type == "code"]
    assert [t.index for t in timings] == code
    longest = max(timings, key=lambda t: t.seconds)
    assert longest.items == ("accuracy",)
    graded = {item for t in timings for item in t.items}
    assert graded == {item.id for item in exercise.items}


def test_the_plan_carries_budgets_to_the_runner_and_back():
    plan = RunPlan(cell_timeout=900, cell_output_bytes=1,
                   notebook_output_bytes=1, cell_budgets={3: 60.0, 9: 390.0})
    again = RunPlan.model_validate_json(plan.model_dump_json())
    assert again.cell_budgets == {3: 60.0, 9: 390.0}


def test_the_host_writes_the_budgets_into_the_plan(exercise):
    """The host's side: ``build_plan`` puts the budgets, capped by ``cell_timeout``, in the
    plan the runner reads (``execute_notebook`` derives them from the reference)."""
    from grader import notebook_run

    plan = notebook_run.build_plan(exercise, exercise.limits.replace(cell_timeout=100), {},
                                   {0: 60.0, 1: 390.0})
    again = RunPlan.model_validate_json(plan.model_dump_json())
    assert again.cell_budgets == {0: 60.0, 1: 100.0}
    assert again.cell_timeout == 100
