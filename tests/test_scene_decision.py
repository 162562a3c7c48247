"""Object or scene from the cloud's shape, not only its size: rooms in any units become scenes, objects in millimetres stay objects."""

from __future__ import annotations

import numpy as np
import pytest

from occrecon.frames import up_rotation
from occrecon.scene import cloud_is_scene, scene_or_object
from test_routing import chair_like
from test_scene import box_room


@pytest.mark.parametrize("unit, scale", [("m", 1.0), ("cm", 100.0), ("mm", 1000.0)])
def test_a_room_seen_from_inside_is_a_scene_in_any_units_without_being_told(unit, scale):
    for up in ("y", "z"):
        assert scene_or_object(box_room(size=(7.0, 2.7, 5.0)) @ up_rotation(up) * scale, None) == (True, None), (unit, up)


@pytest.mark.parametrize("scale", [100.0, 1000.0])
def test_objects_in_centimetres_or_millimetres_stay_objects_with_a_note_naming_scene(scale):
    # A closed box (a cabinet with its doors shut) has planes at all its faces, as a room has, but nothing stands inside.
    for cloud in (chair_like(1.0), chair_like(2.0) @ up_rotation("x")):
        scene, note = scene_or_object(cloud * scale, None)
        assert not scene and "--scene" in note


def test_a_closed_box_is_no_room_and_under_4_m_size_still_decides():
    assert not cloud_is_scene(chair_like(3.0))  # planes at every face, nothing standing inside
    small_room = box_room() * 0.6  # 3.6 m across: shaped like a room
    assert cloud_is_scene(small_room)
    assert scene_or_object(small_room, None) == (False, None)  # but under 4 m: the room-sized note comes from the pipeline


class SceneModelLoaded(Exception):
    """Raised by the stand-in loader: the routing chose the scene model (no crop needs to run to know)."""


def test_a_room_in_millimetres_loads_the_scene_model_and_a_millimetre_box_does_not(tmp_path):
    from occrecon.loading import load_model
    from occrecon.pipeline import reconstruct
    from tiny_models import save_tiny_model

    def load_scene():
        raise SceneModelLoaded

    model = load_model(save_tiny_model("points", tmp_path / "points"), "cpu")
    boxed = reconstruct(model, "points", chair_like(1019.0), scene_model=load_scene, rotations=1, fit_steps=0, threshold=0.2)
    assert any("--scene --units cm" in note for note in boxed.notes)
    with pytest.raises(SceneModelLoaded):
        reconstruct(model, "points", box_room() * 1000.0, scene_model=load_scene, rotations=1, fit_steps=0)
