"""MISE, marching cubes, refinement and simplification on analytic occupancy fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from occrecon.extract import (
    RefinementGuide,
    box_bounds,
    dense_grid,
    extract_grid,
    marching_cubes,
    probability_to_logit,
    refine_vertices,
    simplify,
)


def sphere(radius=0.35, center=(0.0, 0.0, 0.0), sharpness=20.0):
    center = np.asarray(center)
    return lambda p: sharpness * (radius - np.linalg.norm(p - center, axis=1))


def box(half=(0.3, 0.2, 0.25)):
    half = np.asarray(half)
    return lambda p: 10.0 * np.min(half - np.abs(p), axis=1)


def torus(major=0.3, minor=0.1):
    def field(p):
        q = np.stack([np.hypot(p[:, 0], p[:, 2]) - major, p[:, 1]], axis=1)
        return 10.0 * (minor - np.linalg.norm(q, axis=1))

    return field


def test_probability_to_logit_matches_upstream_threshold():
    assert probability_to_logit(0.2) == pytest.approx(-1.3862944, abs=1e-6)
    assert probability_to_logit(0.5) == 0.0
    with pytest.raises(ValueError):
        probability_to_logit(1.0)


@pytest.mark.parametrize("field", [sphere(), box(), torus()], ids=["sphere", "box", "torus"])
def test_mise_equals_dense_grid_for_smooth_fields(field):
    hierarchical = extract_grid(field, resolution0=16, upsampling_steps=2, threshold=0.0)
    dense = dense_grid(field, 64)
    v_h, f_h = marching_cubes(hierarchical, 0.0)
    v_d, f_d = marching_cubes(dense, 0.0)
    assert len(f_h) == len(f_d) > 0
    np.testing.assert_allclose(v_h, v_d, atol=1e-9)
    np.testing.assert_array_equal(f_h, f_d)
    assert hierarchical.n_evaluations < 0.35 * dense.n_evaluations


def test_mise_evaluation_count_matches_published_figure():
    # peers.md §2: libmise on a sphere of radius 0.35 at 32 + 2 steps needs 133,813 evaluations.
    grid = extract_grid(sphere(0.35), resolution0=32, upsampling_steps=2, threshold=0.0)
    assert grid.n_evaluations == 133_813
    assert grid.values.shape == (129, 129, 129)


def test_a_part_thinner_than_a_coarse_cell_needs_a_finer_coarse_grid():
    # A 0.024-thick plate between two planes of the 32³ lattice (spacing 1.1/32 = 0.034): no coarse
    # point is inside it, no coarse cell straddles, and MISE never looks again. From 64³ (spacing 0.017)
    # some lattice plane always cuts it, and the same 128³ final grid recovers it.
    centre, half = 1.1 / 64 + 0.0005, 0.012
    plate = lambda p: 10.0 * np.minimum(half - np.abs(p[:, 1] - centre), 0.4 - np.abs(p[:, [0, 2]]).max(axis=1))  # noqa: E731
    missed = extract_grid(plate, resolution0=32, upsampling_steps=2, threshold=0.0)
    found = extract_grid(plate, resolution0=64, upsampling_steps=1, threshold=0.0)
    assert len(marching_cubes(missed, 0.0)[1]) == 0
    vertices, faces = marching_cubes(found, 0.0)
    area = trimesh.Trimesh(vertices, faces).area
    assert area == pytest.approx(2 * 0.8 * 0.8 + 4 * 0.8 * 2 * half, rel=0.05)
    # Anchored at points sampled on the plate, MISE from 32³ subdivides the cells around them and
    # finds the same surface as from 64³, for far fewer evaluations.
    rng = np.random.default_rng(0)
    on_plate = np.c_[rng.uniform(-0.4, 0.4, 3000), centre + rng.choice([-half, half], 3000), rng.uniform(-0.4, 0.4, 3000)]
    anchored = extract_grid(plate, resolution0=32, upsampling_steps=2, threshold=0.0, guide=RefinementGuide(anchors=on_plate))
    anchored_vertices, anchored_faces = marching_cubes(anchored, 0.0)
    np.testing.assert_array_equal(anchored_faces, faces)
    np.testing.assert_allclose(anchored_vertices, vertices, atol=1e-9)
    assert anchored.n_evaluations < 0.5 * found.n_evaluations
    # Anchors outside the box are ignored.
    far = extract_grid(plate, resolution0=32, upsampling_steps=2, threshold=0.0, guide=RefinementGuide(anchors=on_plate + 5.0))
    assert far.n_evaluations == missed.n_evaluations


def test_unevaluated_points_keep_their_side_of_the_threshold():
    field = sphere(0.3)
    grid = extract_grid(field, resolution0=8, upsampling_steps=3, threshold=0.0)
    idx = np.stack(np.meshgrid(*(np.arange(65),) * 3, indexing="ij"), -1).reshape(-1, 3)
    lower, upper = box_bounds()
    truth = field(lower + idx * (upper - lower) / 64).reshape((65,) * 3)
    # Away from the surface the sign must be right everywhere.
    far = np.abs(truth) > 20 * (1.1 / 8)
    assert np.array_equal(grid.values[far] > 0, truth[far] > 0)


def test_marching_cubes_frame_volume_and_outward_winding():
    grid = extract_grid(sphere(0.35, center=(0.1, -0.05, 0.0)), resolution0=32, upsampling_steps=2)
    vertices, faces = marching_cubes(grid, 0.0)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight
    assert mesh.volume > 0  # positive signed volume ⇔ outward normals
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.35**3, rel=0.01)
    np.testing.assert_allclose(mesh.bounds.mean(axis=0), [0.1, -0.05, 0.0], atol=5e-3)
    np.testing.assert_allclose(mesh.extents, 0.7, atol=1e-2)


def test_surface_touching_the_box_is_closed_by_padding():
    grid = extract_grid(lambda p: np.ones(len(p)), resolution0=4, upsampling_steps=1)
    vertices, faces = marching_cubes(grid, 0.0)
    mesh = trimesh.Trimesh(vertices, faces)
    assert mesh.is_watertight
    np.testing.assert_allclose(mesh.bounds, [[-0.55] * 3, [0.55] * 3], atol=0.55 / 8 + 1e-9)


def test_empty_field_gives_empty_mesh():
    grid = extract_grid(lambda p: -np.ones(len(p)), resolution0=4, upsampling_steps=2)
    vertices, faces = marching_cubes(grid, 0.0)
    assert vertices.shape == (0, 3) and faces.shape == (0, 3)
    assert grid.n_evaluations == 125  # nothing to subdivide


def test_batches_never_exceed_batch_size():
    sizes = []

    def field(p):
        sizes.append(len(p))
        return sphere()(p)

    extract_grid(field, resolution0=16, upsampling_steps=2, batch_size=1000)
    assert max(sizes) <= 1000


def test_custom_box_bounds():
    lower, upper = np.array([1.0, 2.0, 3.0]), np.array([3.0, 4.0, 5.0])
    grid = extract_grid(sphere(0.5, center=(2, 3, 4)), resolution0=16, upsampling_steps=1, lower=lower, upper=upper)
    vertices, _ = marching_cubes(grid, 0.0)
    np.testing.assert_allclose(vertices.mean(axis=0), [2, 3, 4], atol=1e-2)


def test_simplify_reaches_target_and_keeps_shape():
    grid = extract_grid(sphere(), resolution0=32, upsampling_steps=1)
    vertices, faces = marching_cubes(grid, 0.0)
    small_v, small_f = simplify(vertices, faces, 500)
    assert len(small_f) <= 500 < len(faces)
    radii = np.linalg.norm(small_v, axis=1)
    assert np.all(np.abs(radii - 0.35) < 0.02)


def test_refinement_moves_vertices_towards_the_surface():
    radius = 0.3
    grid = extract_grid(sphere(radius), resolution0=8, upsampling_steps=0)
    vertices, faces = marching_cubes(grid, 0.0)
    vertices = vertices * 1.05  # start off the surface

    def decode(points: torch.Tensor) -> torch.Tensor:
        return 20.0 * (radius - points.norm(dim=1))

    before = np.abs(np.linalg.norm(vertices, axis=1) - radius).mean()
    refined = refine_vertices(vertices, faces, decode, threshold=0.5, steps=80, learning_rate=1e-3)
    after = np.abs(np.linalg.norm(refined, axis=1) - radius).mean()
    assert after < 0.5 * before


# --------------------------------------------------------------------------- non-finite fields (issue 25, item 3)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_field_with_nan_or_inf_is_an_error_not_a_mesh(bad):
    from occrecon.errors import NonFiniteFieldError, OccreconError

    def broken(points):
        values = sphere()(points)
        values[::7] = bad  # a network with NaN weights or an infinite input noise
        return values

    with pytest.raises(NonFiniteFieldError) as info:
        extract_grid(broken, resolution0=8, upsampling_steps=1)
    message = str(info.value)
    assert isinstance(info.value, OccreconError) and "\n" not in message
    assert "network's output was not finite" in message and ("NaN" in message or "inf" in message)


def test_a_broken_field_fails_at_its_first_batch():
    calls = []

    def nan_field(points):
        calls.append(len(points))
        return np.full(len(points), np.nan)

    from occrecon.errors import NonFiniteFieldError

    with pytest.raises(NonFiniteFieldError):
        extract_grid(nan_field, resolution0=16, upsampling_steps=2, batch_size=100)
    assert calls == [100]


def test_logits_beyond_float32_are_not_finite_either():
    from occrecon.errors import NonFiniteFieldError

    with pytest.raises(NonFiniteFieldError):
        extract_grid(lambda p: np.full(len(p), 1e300), resolution0=4, upsampling_steps=0)


def test_marching_cubes_refuses_a_lattice_with_nan():
    from occrecon.errors import NonFiniteFieldError
    from occrecon.extract.meshing import marching_cubes_block

    grid = extract_grid(sphere(), resolution0=8, upsampling_steps=1)
    grid.values[3, 4, 5] = np.nan
    with pytest.raises(NonFiniteFieldError):
        marching_cubes(grid, 0.0)
    with pytest.raises(NonFiniteFieldError):
        marching_cubes_block(grid.values, 0.0)


def test_preset_nan_marks_unknown_values_and_is_not_an_error():
    """The sliding window passes NaN for "not evaluated yet": that must stay legal."""
    fine = 8 * 2
    preset = np.full((fine + 1,) * 3, np.nan, dtype=np.float32)
    reference = extract_grid(sphere(), resolution0=8, upsampling_steps=1)
    preset[0] = reference.values[0]
    grid = extract_grid(sphere(), resolution0=8, upsampling_steps=1, guide=RefinementGuide(preset=preset))
    assert np.isfinite(grid.values).all()
    marching_cubes(grid, 0.0)


def test_nan_vertices_never_make_a_mesh_nor_a_file(tmp_path):
    from occrecon.errors import NonFiniteMeshError
    from occrecon.io.mesh import make_mesh, write_mesh

    vertices = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [np.nan, 0, 1]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    with pytest.raises(NonFiniteMeshError, match="1 of 4 vertices"):
        make_mesh(vertices, faces)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    with pytest.raises(NonFiniteMeshError):
        write_mesh(mesh, tmp_path / "out.obj")
    assert list(tmp_path.iterdir()) == []
