"""Issue 27, item 9: help texts and listings that read whole at 80 columns and when piped."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def piped(*args: str, columns: int = 80) -> str:
    """``occrecon ARGS`` with its output piped, as ``| less`` or a file gets it."""
    env = {**os.environ, "COLUMNS": str(columns)}
    env.pop("FORCE_COLOR", None)
    done = subprocess.run([sys.executable, "-m", "occrecon", *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _option_names(command) -> set[str]:
    import typer.main

    click_command = typer.main.get_command(command) if not hasattr(command, "params") else command
    return {name for param in click_command.params for name in (*param.opts, *param.secondary_opts) if name.startswith("--")}


@pytest.mark.parametrize("command", ["points", "train"])
def test_option_names_are_whole_and_flags_take_no_value_at_80_columns(command):
    from occrecon.cli.main import app
    import typer.main

    text = piped(command, "--help")
    group = typer.main.get_command(app)
    names = _option_names(group.commands[command])  # type: ignore[attr-defined]
    assert names and all(re.search(rf"(^|[\s,/]){re.escape(name)}($|[\s,/=\[])", text, re.M) for name in names), text
    assert "…" not in text and "<bool>" not in text and "BOOLEAN" not in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_models_listing_keeps_its_columns_when_piped():
    text = piped("models")
    header = next(line for line in text.splitlines() if line.startswith("name"))
    assert header.split() == ["name", "task", "from", "size", "cached", "description"]
    row = next(line for line in text.splitlines() if line.startswith("convonet-points-synthetic "))
    assert "bundled" in row and "yes" in row and len(row.split()) > 6  # the description came along, unwrapped


def _bundled_generation(name: str) -> dict:
    return json.loads((ROOT / "weights" / name / "config.json").read_text(encoding="utf-8"))["generation"]


def test_the_models_defaults_are_shown_where_they_are_chosen():
    from occrecon.cli import _options

    threshold = _options.ThresholdOpt.__metadata__[0].help
    points, image = _bundled_generation("convonet-points-synthetic"), _bundled_generation("onet-img-synthetic")
    assert f"{points['threshold']:g} for the bundled points, voxels and scene models" in threshold
    assert _bundled_generation("convonet-voxels-synthetic")["threshold"] == _bundled_generation("convonet-scene-synthetic")["threshold"] == points["threshold"]
    assert f"{image['threshold']:g} for the bundled image model" in threshold
    assert f"{points['rotations']} for the bundled convonet-points-synthetic" in _options.RotationsOpt.__metadata__[0].help
    assert f"{points['fit_steps']} for the bundled convonet-points-synthetic" in _options.FitStepsOpt.__metadata__[0].help
    assert f"1 for the bundled image model" in _options.UpsamplingOpt.__metadata__[0].help and image["upsampling_steps"] == 1
    text = " ".join(piped("points", "--help").split())
    assert "0.45 for the bundled" in text and "8 for the bundled" in text and "60 for the bundled" in text


def option_help(text: str, name: str) -> str:
    """The help of option ``name`` in a ``--help`` text, its wrapped lines joined."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"\s+(-\w, )?{re.escape(name)}\b", line))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if re.match(r"\s{1,4}-", line) or not line.strip():
            break
        block.append(line)
    return " ".join(" ".join(block).split())


def test_train_seed_has_its_own_help_and_refine_states_its_cost():
    seed_line = option_help(piped("train", "--help"), "--seed")
    assert "training data" in seed_line and "refinement" not in seed_line
    refine_line = option_help(piped("points", "--help"), "--refine")
    assert re.search(r"over \d+× the CPU time", refine_line) and "GB of memory" in refine_line, refine_line


def test_a_model_prints_as_one_line(points_model):
    from occrecon import load_model

    model = load_model(str(points_model), "cpu")
    text = repr(model)
    assert "\n" not in text
    parameters = sum(p.numel() for p in model.net.parameters())
    for part in (str(points_model), "task='points'", "convonet", f"parameters={parameters:,}", "device='cpu'"):
        assert part in text
