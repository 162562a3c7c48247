"""One-sided clouds (a single view) are told apart from whole surfaces, and the note names the completion models."""

from __future__ import annotations

import numpy as np

from occrecon.visibility import BUNDLED_PARTIAL_MODEL, PARTIAL_MODEL, one_sided, one_sided_note


def sphere(n: int = 4000, seed: int = 0) -> np.ndarray:
    points = np.random.default_rng(seed).normal(size=(n, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def can(n: int = 6000, seed: int = 0) -> np.ndarray:
    """A closed cylinder, radius 0.3, height 1 (a can, a milk carton's rounder cousin)."""
    rng = np.random.default_rng(seed)
    angle, height, radius = rng.uniform(0, 2 * np.pi, n), rng.uniform(-0.5, 0.5, n), 0.3 * np.sqrt(rng.uniform(0, 1, n))
    side = np.c_[0.3 * np.cos(angle), height, 0.3 * np.sin(angle)]
    caps = np.c_[radius * np.cos(angle), np.sign(height) * 0.5, radius * np.sin(angle)]
    return np.where((rng.random(n) < 0.7)[:, None], side, caps)


def box(n: int = 6000, seed: int = 0) -> np.ndarray:
    points = np.random.default_rng(seed).uniform(-1, 1, (n, 3)) * [0.5, 0.8, 0.3]
    axis = np.arange(n) % 3
    points[np.arange(n), axis] = np.sign(points[np.arange(n), axis]) * np.array([0.5, 0.8, 0.3])[axis]
    return points


def seen_from(points: np.ndarray, eye: np.ndarray, cells: int = 80) -> np.ndarray:
    """What a camera at ``eye`` sees of a surface sample: the nearest point per ray (a z-buffer over ray directions)."""
    rays = points - eye
    depth = np.linalg.norm(rays, axis=1)
    rays /= depth[:, None]
    centre = -eye / np.linalg.norm(eye)
    side = np.cross(centre, [0.0, 1.0, 0.0] if abs(centre[1]) < 0.9 else [1.0, 0.0, 0.0])
    side /= np.linalg.norm(side)
    upward = np.cross(side, centre)
    pixel = np.floor(np.c_[rays @ side, rays @ upward] / (rays @ centre)[:, None] * cells).astype(np.int64)
    key = pixel[:, 0] * 100_000 + pixel[:, 1]
    order = np.lexsort((depth, key))
    first = order[np.r_[True, key[order][1:] != key[order][:-1]]]
    return points[first]


def test_one_view_is_one_sided_and_the_whole_surface_is_not():
    eye = np.array([2.0, 1.5, 3.0])
    for surface in (can(30_000), box(30_000)):
        view = seen_from(surface, eye)
        assert one_sided(view + np.random.default_rng(1).normal(scale=0.004, size=view.shape))
        assert not one_sided(surface[:4000])
        assert not one_sided(surface[:4000] + np.random.default_rng(2).normal(scale=0.004, size=(4000, 3)))


def test_the_note_names_the_bundled_completion_model_only_when_it_is_installed():
    view = seen_from(box(30_000), np.array([2.0, 1.5, 3.0]))
    note = one_sided_note(view, "convonet-points-synthetic")
    assert PARTIAL_MODEL in note and BUNDLED_PARTIAL_MODEL not in note
    assert BUNDLED_PARTIAL_MODEL in one_sided_note(view, "convonet-points-synthetic", bundled=True)
    assert one_sided_note(view, PARTIAL_MODEL) is None  # already the model for it
    assert one_sided_note(sphere(), "convonet-points-synthetic") is None


def test_a_one_sided_cloud_gets_the_note_once_from_the_pipeline(tmp_path, monkeypatch):
    from occrecon import pipeline
    from occrecon.loading import load_model
    from tiny_models import save_tiny_model

    model = load_model(save_tiny_model("points", tmp_path / "points"), "cpu")
    view = seen_from(box(30_000), np.array([2.0, 1.5, 3.0]))
    plain = dict(rotations=1, fit_steps=0, winding=False, anchor_points=False, threshold=0.2, up="y")
    notes = pipeline.reconstruct(model, "points", view, **plain).notes
    assert sum("seen from one side only" in note for note in notes) == 1 and BUNDLED_PARTIAL_MODEL not in " ".join(notes)
    (tmp_path / "weights" / BUNDLED_PARTIAL_MODEL).mkdir(parents=True)
    (tmp_path / "weights" / BUNDLED_PARTIAL_MODEL / "config.json").write_text("{}")
    monkeypatch.setattr(pipeline, "bundled_weights_dir", lambda: tmp_path / "weights")
    assert any(BUNDLED_PARTIAL_MODEL in note for note in pipeline.reconstruct(model, "points", view, **plain).notes)
    assert not any("one side" in note for note in pipeline.reconstruct(model, "points", sphere(), **plain).notes)
