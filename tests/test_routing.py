"""Object or scene: a cloud goes through the sliding window only when its size in known units says so, and plans stay bounded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from occrecon.errors import InputError
from occrecon.scene import reconstruct_scene, scene_or_object
from test_scene import SETTINGS, analytic_model, box_room, floor_scan


def chair_like(extent: float, n: int = 3000, seed: int = 0) -> np.ndarray:
    """Points on a chair-sized box (half as wide and deep as tall) whose longest side is ``extent`` units."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 3))
    points /= np.abs(points).max(axis=1, keepdims=True)  # onto the cube's surface
    points *= [0.25, 0.5, 0.25]
    return points / np.ptp(points, axis=0).max() * extent


def test_a_cloud_whose_units_are_a_guess_stays_an_object_with_a_note():
    # 1,019 units: a 10 m room in centimetres, or a 1 m chair in millimetres.
    scene, note = scene_or_object(chair_like(1019.0), None)
    assert not scene and "1019 units across" in note and "--scene --units cm" in note
    # Told the units, the same cloud is a 10 m scene.
    assert scene_or_object(chair_like(1019.0), "cm") == (True, None)
    assert scene_or_object(chair_like(1019.0), "mm") == (False, None)


def test_metre_sized_clouds_decide_by_their_size_and_shape():
    assert scene_or_object(box_room(size=(12.0, 3.0, 8.0)), None) == (True, None)
    assert scene_or_object(chair_like(2.0), None) == (False, None)
    # A closed box 12 units across: no floor with walls and things standing in it, so an object, with the way to say otherwise.
    scene, note = scene_or_object(chair_like(12.0), None)
    assert not scene and "--scene" in note
    assert scene_or_object(chair_like(12.0), "m") == (True, None)  # in units given, size decides


def test_the_millimetre_chair_does_not_load_the_scene_model(tmp_path):
    from occrecon.loading import load_model
    from occrecon.pipeline import reconstruct
    from tiny_models import save_tiny_model

    loads = []

    def load_scene():
        loads.append(1)
        return analytic_model()

    model = load_model(save_tiny_model("points", tmp_path / "points"), "cpu")
    result = reconstruct(model, "points", chair_like(1019.0), scene_model=load_scene, rotations=1, fit_steps=0)
    assert not loads
    assert any("1019 units across" in note for note in result.notes)
    assert np.ptp(result.mesh.vertices, axis=0).max() < 1300  # the object, in the cloud's own units


def test_a_plan_over_the_crop_budget_is_refused_before_any_crop_runs():
    model = analytic_model()
    scan = floor_scan(n=4000, size=(3.0, 3.0))
    small_budget = dataclasses.replace(SETTINGS, max_crops=4)
    with pytest.raises(InputError, match="plans .* crops .* over the 4 occrecon runs without being told"):
        reconstruct_scene(model, scan, units="m", settings=small_budget, on_crop=lambda done, total: pytest.fail("a crop ran"))
    # Within the budget it runs.
    assert len(reconstruct_scene(model, scan, units="m", settings=dataclasses.replace(SETTINGS, max_crops=10_000)).mesh.faces)


def test_the_crop_budget_comes_from_the_environment(monkeypatch):
    from occrecon.errors import OptionError
    from occrecon.scene import scene_settings

    monkeypatch.setenv("OCCRECON_MAX_CROPS", "12")
    assert scene_settings(analytic_model()).max_crops == 12
    monkeypatch.setenv("OCCRECON_MAX_CROPS", "lots")
    with pytest.raises(OptionError, match="OCCRECON_MAX_CROPS"):
        scene_settings(analytic_model())
