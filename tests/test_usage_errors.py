"""Usage mistakes are caught at once, as usage errors (exit 2), before any work."""

from __future__ import annotations

import time

import pytest


def run(args: list[str], capsys, monkeypatch=None) -> tuple[int, str]:
    from occrecon.cli.main import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_an_unknown_task_filter_is_a_usage_error(capsys):
    code, err = run(["models", "--task", "bogus"], capsys)
    assert code == 2 and "--task must be one of image, points" in err


def test_an_empty_model_name_is_refused_not_taken_for_the_current_folder(capsys):
    code, err = run(["models", "download", ""], capsys)
    assert code == 2 and "an empty model name" in err


def test_a_folder_without_a_config_is_not_a_model(tmp_path, capsys):
    code, err = run(["models", "download", tmp_path], capsys)
    assert code == 2 and "not a model folder" in err


@pytest.mark.parametrize("count, task", [("0", "0"), ("4", "7"), ("x", "0")])
def test_a_slurm_array_that_makes_no_shard_is_a_usage_error(count, task, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", task)
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", count)
    code, err = run(["points", "examples/chair_points.ply", "-d", tmp_path, "-q"], capsys)
    assert code == 2 and "SLURM_ARRAY_TASK" in err and "--shard" in err
    assert not any(tmp_path.iterdir())


def test_training_from_an_unknown_model_fails_before_generating_data(tmp_path, capsys):
    start = time.perf_counter()
    code, err = run(["train", "points", "--out", tmp_path / "run", "--cache", tmp_path / "cache", "--from", "no-such-model", "--steps", "1"], capsys)
    assert code == 2 and "unknown model 'no-such-model'" in err
    assert not (tmp_path / "cache").exists() and time.perf_counter() - start < 30


@pytest.mark.parametrize("name, problem", [("x[/]y", "not a valid org/name Hub id"), ("a/" + "b" * 5000, "a model name of 5,002 characters")], ids=["markup", "5000-characters"])
def test_malformed_model_names_are_usage_errors_not_bugs(name, problem, capsys, tmp_path):
    code, err = run(["points", "examples/chair_points.ply", "--model", name, "-d", tmp_path], capsys)
    assert code == 2 and problem in err and len(err) < 400
