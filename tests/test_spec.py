from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from grader.limits import GiB, Limits
from grader.spec import SpecError, list_exercises, load_exercise, parse_size


def test_lecture6_spec_has_the_eleven_items_worth_100(exercise):
    assert [i.id for i in exercise.items] == [
        "conv1", "conv2", "conv3", "pool1", "pool2", "pool3",
        "conv_layer", "pooling_layer", "dense_layer", "model", "accuracy",
    ]
    assert exercise.max_score == 100
    assert exercise.runtime.tf1 and exercise.runtime.datasets == ("mnist",)
    assert exercise.limits.memory_bytes == 6 * GiB
    assert exercise.accuracy is not None and exercise.accuracy.floor < exercise.accuracy.threshold
    assert exercise.item("conv2").compare.options["stride"] == 2


def _copy(tmp_path: Path, config, edit) -> Path:
    target = tmp_path / "exercises" / "chap06_cnn"
    shutil.copytree(config.exercises_root / "chap06_cnn", target)
    spec = target / "exercise.toml"
    spec.write_text(edit(spec.read_text()))
    return target


def test_unknown_key_is_rejected_with_file_and_key(tmp_path, config):
    folder = _copy(tmp_path, config, lambda s: s.replace("[limits]\n", "[limits]\ncel_timeout = 3\n"))
    with pytest.raises(SpecError) as info:
        load_exercise(folder)
    assert "cel_timeout" in str(info.value)
    assert str(folder / "exercise.toml") in str(info.value)


def test_unknown_key_inside_an_item_table(tmp_path, config):
    folder = _copy(tmp_path, config, lambda s: s.replace('id = "conv2"\n', 'id = "conv2"\npoint = 3\n'))
    with pytest.raises(SpecError, match=r"unknown key 'point' in \[items\[1\]\]"):
        load_exercise(folder)


def test_wrong_type_and_missing_key(tmp_path, config):
    folder = _copy(tmp_path, config, lambda s: s.replace("points = 6", 'points = "six"', 1))
    with pytest.raises(SpecError, match=r"items\[0\]\.points: expected int or float, got str"):
        load_exercise(folder)
    folder = _copy(tmp_path / "b", config, lambda s: s.replace("threshold = ", "# threshold = "))
    with pytest.raises(SpecError, match="missing key 'threshold'"):
        load_exercise(folder)


def test_a_schedule_table_is_kept_as_written_for_the_service(tmp_path, config):
    """``[schedule]`` is the service's (the course's default rules): the grader keeps it as a
    read-only table and checks only that it is one."""
    assert load_exercise(config.exercises_root / "chap06_cnn").schedule is None
    table = '[schedule]\ndue = 2026-12-24T23:59:59+09:00\nlate_penalty = "10%/day"\n\n'
    folder = _copy(tmp_path, config, lambda s: s.replace("[[items]]", table + "[[items]]", 1))
    schedule = load_exercise(folder).schedule
    assert dict(schedule) == {"due": dt.datetime(2026, 12, 24, 23, 59, 59,
                                                 tzinfo=dt.timezone(dt.timedelta(hours=9))),
                              "late_penalty": "10%/day"}
    with pytest.raises(TypeError):
        schedule["due"] = None  # read-only
    folder = _copy(tmp_path / "b", config, lambda s: "schedule = 3\n" + s)
    with pytest.raises(SpecError, match="schedule: expected dict, got int"):
        load_exercise(folder)


def test_duplicate_item_and_folder_mismatch(tmp_path, config):
    folder = _copy(tmp_path, config, lambda s: s.replace('id = "conv2"', 'id = "conv1"'))
    with pytest.raises(SpecError, match="'conv1' is used twice"):
        load_exercise(folder)
    folder = _copy(tmp_path / "c", config, lambda s: s.replace('id = "chap06_cnn"', 'id = "x"'))
    with pytest.raises(SpecError, match="differs from the folder name"):
        load_exercise(folder)


def test_bad_limits_and_toml(tmp_path, config):
    folder = _copy(tmp_path, config, lambda s: s.replace('memory = "6GiB"', 'memory = "lots"'))
    with pytest.raises(SpecError, match="cannot read size 'lots'"):
        load_exercise(folder)
    folder = _copy(tmp_path / "d", config, lambda s: s.replace("cell_timeout = 900", "cell_timeout = -1"))
    with pytest.raises(SpecError, match="cell_timeout must be a positive number"):
        load_exercise(folder)
    folder = _copy(tmp_path / "e", config, lambda s: s + "\n[[items]\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_exercise(folder)


def test_sizes_and_limits_value_object():
    assert parse_size("512MiB", "x") == 512 * 1024 * 1024
    assert parse_size("1.5GiB", "x") == int(1.5 * GiB)
    assert parse_size(1000, "x") == 1000
    limits = Limits().replace(cell_timeout=5)
    assert limits.cell_timeout == 5 and Limits().cell_timeout != 5
    with pytest.raises(ValueError):
        Limits(memory_bytes=0)


def test_list_exercises(config, tmp_path):
    listed = list_exercises(config.exercises_root)
    assert "chap06_cnn" in listed and listed == sorted(listed)
    (tmp_path / "b_ex").mkdir()
    (tmp_path / "b_ex/exercise.toml").write_text("")
    (tmp_path / "a_ex").mkdir()
    (tmp_path / "a_ex/exercise.toml").write_text("")
    (tmp_path / "notes").mkdir()  # a folder without a spec is no exercise
    assert list_exercises(tmp_path) == ["a_ex", "b_ex"]


def test_runtime_gpu_is_read_into_its_enum_and_a_typo_is_refused(tmp_path, config):
    from grader.spec import GpuNeed

    assert load_exercise(config.exercises_root / "chap06_cnn").runtime.gpu is GpuNeed.NONE
    folder = _copy(tmp_path, config, lambda s: s.replace("[runtime]\n",
                                                          '[runtime]\ngpu = "required"\n'))
    assert load_exercise(folder).runtime.gpu is GpuNeed.REQUIRED
    folder = _copy(tmp_path / "b", config, lambda s: s.replace("[runtime]\n",
                                                                '[runtime]\ngpu = "requird"\n'))
    with pytest.raises(SpecError, match=r"runtime\.gpu"):
        load_exercise(folder)
    folder = _copy(tmp_path / "c", config, lambda s: s.replace("[runtime]\n",
                                                                "[runtime]\ngpu = 1\n"))
    with pytest.raises(SpecError, match=r"runtime\.gpu"):
        load_exercise(folder)
