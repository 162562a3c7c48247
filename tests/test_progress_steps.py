"""Issue 27, item 7: progress in steps with the time left in a terminal; plain lines in a log file."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from occrecon.cli import _output as out
from occrecon.cli.reconstruct import BatchDisplay, CommandLine, StageClock


def test_a_stage_in_steps_says_how_far_and_how_long_is_left():
    clock = StageClock()
    clock.update("fitting to the points", 0.0)
    assert clock.text(0.0) == "fitting to the points" and clock.seconds_left(0.0) is None
    clock.update("fitting step 1/60", 1.0)
    assert clock.text(1.0) == "fitting step 1/60"  # one step is no pace yet
    clock.update("fitting step 11/60", 11.0)
    assert clock.seconds_left(11.0) == pytest.approx(49.0)
    assert clock.text(11.0) == "fitting step 11/60, about 0m49s left"
    clock.update("MISE level 1/3", 12.0)  # another stage: its own pace
    assert clock.seconds_left(12.0) is None
    clock.update("MISE level 2/3", 14.0)
    assert clock.seconds_left(14.0) == pytest.approx(2.0)


def test_the_stages_of_one_object_come_in_steps(points_model):
    from occrecon import ReconstructOptions, load_model, reconstruct

    rng = np.random.default_rng(0)
    points = rng.normal(size=(800, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    stages: list[str] = []
    options = ReconstructOptions(rotations=1, fit_steps=3, winding=False, resolution=8, upsampling_steps=2)
    reconstruct(load_model(str(points_model), "cpu"), "points", points, options, on_stage=stages.append)
    assert [s for s in stages if s.startswith("fitting step")] == ["fitting step 1/3", "fitting step 2/3", "fitting step 3/3"]
    assert [s for s in stages if s.startswith("MISE level")] == ["MISE level 1/3", "MISE level 2/3", "MISE level 3/3"]


def _plan(paths: list[str]):
    from occrecon.batch import BatchPlan
    from occrecon.io.paths import InputItem

    return BatchPlan([(InputItem(Path(p)), Path(p).with_suffix(".obj"), None) for p in paths])


def test_in_a_terminal_one_object_shows_its_stage_steps_not_a_bar_of_one(monkeypatch):
    monkeypatch.setattr(out, "stderr", Console(file=io.StringIO(), force_terminal=True, width=100))
    display = BatchDisplay("points", _plan(["chair.ply"]), CommandLine(inputs=["chair.ply"]), said=[])
    batch_task, stage_task = display.progress.tasks
    assert not batch_task.visible  # one input: no 0/1 bar
    display.stage("reading input")
    display.stage("fitting step 1/60")
    display.stage("fitting step 30/60")
    assert stage_task.visible and stage_task.total == 60 and stage_task.completed == 30
    assert stage_task.fields["steps"] == "30/60" and stage_task.fields["left"].startswith("about ")
    assert "fitting step" in stage_task.description
    many = BatchDisplay("points", _plan(["a.ply", "b.ply"]), CommandLine(inputs=["a.ply", "b.ply"]), said=[])
    assert many.progress.tasks[0].visible


def test_in_a_log_file_an_object_says_where_it_is_once_a_minute(monkeypatch, capsys):
    monkeypatch.setattr(out, "LOG_INTERVAL_S", 0.2)  # a minute, shortened
    display = BatchDisplay("points", _plan(["chair.ply"]), CommandLine(inputs=["chair.ply"]), said=[])
    assert display.plain and not display.live  # capsys: stderr is not a terminal
    with display:
        display.stage("reading input")
        display.stage("fitting step 1/60")
        display.stage("fitting step 20/60")  # then no stage for longer than the interval
        time.sleep(1.2)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("  chair.ply: ")]
    assert lines and lines[0].startswith("  chair.ply: fitting step 20/60") and lines[0].endswith(")")
    assert "━" not in err  # no live bar in a log file


def test_a_training_log_ends_with_its_last_line_not_a_cut_off_bar(monkeypatch, capsys, tmp_path):
    import occrecon.training
    from occrecon.cli.train import _run_with_progress
    from occrecon.training import StepReport, TrainConfig

    def fake_train(config, *, resume, on_step, on_data):
        on_data(4, 4)
        for step in (1, 2):
            on_step(StepReport(step=step, loss=1.0, shapes_per_second=2.0, val_iou=None, best_iou=None))
        return Path(config.out)

    monkeypatch.setattr(occrecon.training, "train", fake_train)
    _run_with_progress(TrainConfig(task="points", out=str(tmp_path / "run"), steps=2), resume=False, quiet=False, json_output=False)
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("step 2/2: loss 1.0")
    assert "━" not in err and not any(line.startswith("train") for line in err.splitlines())
