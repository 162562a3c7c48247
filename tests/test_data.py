"""Tests of the procedural training data (occrecon.data); small sizes keep them fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import open3d as o3d
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from occrecon import camera
from occrecon.data import cache, mesh_source, partial, prepare, sdf, shapes
from occrecon.errors import InputError

SMALL = dict(n_uniform=4000, n_near=2000, n_surface=3000, n_views=2, image_size=96)
TINY = dict(n_uniform=1000, n_near=500, n_surface=1000, n_views=1, image_size=48)


def _mesh_occupancy(mesh: trimesh.Trimesh, pts: np.ndarray) -> np.ndarray:
    """Mesh containment by open3d ray parity (trimesh's ``contains`` is far slower)."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)), o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    return scene.compute_occupancy(o3d.core.Tensor(pts.astype(np.float32)), nsamples=3).numpy() > 0.5


# ----------------------------------------------------------------------------- SDF


def test_primitives_match_analytic_distances():
    p = np.array([[0, 0, 0], [2, 0, 0], [0, 0.5, 0], [1, 1, 1]], dtype=float)
    np.testing.assert_allclose(sdf.Sphere(1.0).sdf(p), [-1, 1, -0.5, np.sqrt(3) - 1])
    box = sdf.Box((1.0, 0.5, 0.25))
    q = np.array([[0, 0, 0], [2, 0, 0], [1.5, 1.0, 0], [0.9, 0, 0], [0, 0, 1]], dtype=float)
    np.testing.assert_allclose(box.sdf(q), [-0.25, 1.0, np.hypot(0.5, 0.5), -0.1, 0.75])
    cyl = sdf.Cylinder(0.5, 1.0)
    np.testing.assert_allclose(cyl.sdf(np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [1, 2, 0]], float)),
                               [-0.5, 0.5, 1.0, np.hypot(0.5, 1.0)])
    tor = sdf.Torus(1.0, 0.25)
    np.testing.assert_allclose(tor.sdf(np.array([[1, 0, 0], [0, 0, 0], [0, 0, 2]], float)), [-0.25, 0.75, 0.75])
    cap = sdf.Capsule((0, -1, 0), (0, 1, 0), 0.5)
    np.testing.assert_allclose(cap.sdf(np.array([[0, 0, 0], [0, 2, 0], [1, 0, 0]], float)), [-0.5, 0.5, 0.5])
    cone = sdf.Cone(0.5, 0.5, 0.0)
    np.testing.assert_allclose(cone.sdf(np.array([[0, -1, 0], [0, 0, 0]], float))[0], 0.5)
    assert cone.sdf(np.array([[0, 0.49, 0]]))[0] < 0 < cone.sdf(np.array([[0.3, 0.4, 0]]))[0]
    rb = sdf.Box((1.0, 1.0, 1.0), radius=0.2)
    np.testing.assert_allclose(rb.sdf(np.array([[2, 0, 0], [2, 2, 2]], float)), [1.0, np.sqrt(3) * 1.2 - 0.2])
    assert rb.sdf(np.array([[0.99, 0.99, 0.99]]))[0] > 0  # the corner is rounded off
    ell = sdf.Ellipsoid((1.0, 0.5, 0.25))
    assert np.all(ell.sdf(np.array([[0.99, 0, 0], [0, 0.49, 0], [0, 0, 0.24]])) < 0)
    assert np.all(ell.sdf(np.array([[1.01, 0, 0], [0, 0.51, 0], [0, 0, 0.26]])) > 0)


def test_cone_matches_brute_force_distance():
    rng = np.random.default_rng(0)
    cone = sdf.Cone(0.3, 0.4, 0.1)
    p = rng.uniform(-0.6, 0.6, (500, 3))
    d = cone.sdf(p)
    r = np.hypot(p[:, 0], p[:, 2])
    inside = (np.abs(p[:, 1]) < 0.3) & (r < 0.4 - 0.3 * (p[:, 1] + 0.3) / 0.6)
    assert np.array_equal(d < 0, inside)
    # Distance in the (r, y) half plane to the profile polygon.
    prof = np.array([[0, -0.3], [0.4, -0.3], [0.1, 0.3], [0, 0.3]])
    q = np.stack([r, p[:, 1]], 1)
    best = np.full(len(q), np.inf)
    for a, b in zip(prof[:-1], prof[1:]):
        t = np.clip(((q - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
        best = np.minimum(best, np.linalg.norm(q - (a + t[:, None] * (b - a)), axis=1))
    np.testing.assert_allclose(np.abs(d), best, atol=1e-9)


def test_round_cone_is_the_hull_of_its_two_balls():
    # The hull of two balls is the union of the balls interpolated between them, so
    # a dense sweep gives the exact distance outside and the exact sign everywhere.
    rng = np.random.default_rng(0)
    a, b, r_a, r_b = np.array([0.1, -0.2, 0.3]), np.array([0.5, 0.4, -0.2]), 0.05, 0.25
    cone = sdf.RoundCone(tuple(a), tuple(b), r_a, r_b)
    p = rng.uniform(-0.6, 1.0, (3000, 3))
    t = np.linspace(0.0, 1.0, 2001)[:, None]
    swept = np.min(np.linalg.norm(p[:, None] - (a + t * (b - a))[None], axis=2) - (r_a + t[:, 0] * (r_b - r_a))[None], axis=1)
    d = cone.sdf(p)
    assert np.array_equal(d < 0, swept < 0)
    np.testing.assert_allclose(d[swept > 0], swept[swept > 0], atol=1e-6)
    lo, hi = cone.bounds()
    q = rng.uniform(lo - 0.2, hi + 0.2, (4000, 3))
    outside_box = np.any((q < lo) | (q > hi), axis=1)
    assert outside_box.any() and np.all(cone.sdf(q[outside_box]) > 0)
    equal = sdf.RoundCone((0, 0, 0), (1, 0, 0), 0.2, 0.2)
    np.testing.assert_allclose(equal.sdf(p), sdf.Capsule((0, 0, 0), (1, 0, 0), 0.2).sdf(p), atol=1e-12)
    with pytest.raises(ValueError):
        sdf.RoundCone((0, 0, 0), (0.1, 0, 0), 0.5, 0.1)


def test_operators_sign_logic_and_transforms():
    a = sdf.Sphere(0.5)
    b = sdf.Box((0.3, 0.3, 0.3)).translate((0.5, 0, 0))
    p = np.array([[0, 0, 0], [0.7, 0, 0], [0.45, 0, 0], [-0.45, 0, 0], [2, 0, 0]], float)
    ina, inb = a.sdf(p) < 0, b.sdf(p) < 0
    assert np.array_equal((a | b).sdf(p) < 0, ina | inb)
    assert np.array_equal((a - b).sdf(p) < 0, ina & ~inb)
    assert np.array_equal((a & b).sdf(p) < 0, ina & inb)
    # Smooth union contains the union and stays within k/4 of it.
    su = sdf.smooth_union(a, b, 0.2).sdf(p)
    assert np.all(su <= np.minimum(a.sdf(p), b.sdf(p)) + 1e-12)
    assert np.all(su >= np.minimum(a.sdf(p), b.sdf(p)) - 0.05 - 1e-12)
    # Transforms: translation, rotation and uniform scale keep exact distances.
    t = sdf.Sphere(0.5).scale(2.0).rotate((1, 1, 0), 0.7).translate((1, 2, 3))
    q = np.array([[1, 2, 3], [1, 2, 5], [4, 2, 3]], float)
    np.testing.assert_allclose(t.sdf(q), [-1.0, 1.0, 2.0])
    bx = sdf.Box((1.0, 0.1, 0.1)).rotate((0, 0, 1), np.pi / 2)
    assert bx.sdf(np.array([[0, 0.9, 0]]))[0] < 0 < bx.sdf(np.array([[0.9, 0, 0]]))[0]
    lo, hi = bx.bounds()
    np.testing.assert_allclose(hi, [0.1, 1.0, 0.1], atol=1e-9)
    # Shell and rounding.
    sh = sdf.Sphere(1.0).shell(0.2)
    np.testing.assert_allclose(sh.sdf(np.array([[0, 0, 0], [1, 0, 0], [1.5, 0, 0]], float)), [0.9, -0.1, 0.4])
    np.testing.assert_allclose(sdf.Sphere(1.0).round(0.5).sdf(np.array([[2.0, 0, 0]])), [0.5])


def test_union_culling_keeps_a_distance_bound():
    rng = np.random.default_rng(1)
    parts = [sdf.box_at(rng.uniform(-1, 1, 3), rng.uniform(0.05, 0.3, 3)) for _ in range(8)]
    u = sdf.union(*parts)
    p = rng.uniform(-1.5, 1.5, (4000, 3))
    exact = np.min([s.sdf(p) for s in parts], axis=0)
    d = u.sdf(p)
    assert np.array_equal(d < 0, exact < 0)
    assert np.all(np.abs(d) <= np.abs(exact) + 1e-12)


def test_sdf_grid_sparse_matches_dense_signs():
    shape = shapes.canonicalize(shapes.chair(np.random.default_rng(3)))
    grid = sdf.sdf_grid(shape, (-0.55,) * 3, (0.55,) * 3, 48)
    g = np.linspace(-0.55, 0.55, 49)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    assert np.array_equal(grid.reshape(-1) < 0, shape.sdf(pts) < 0)


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("family", sorted(shapes.FAMILIES))
def test_family_is_canonical_watertight_and_labels_agree(family):
    rng = np.random.default_rng([11, sorted(shapes.FAMILIES).index(family)])
    shape = shapes.canonicalize(shapes.FAMILIES[family](rng))
    mesh = prepare.extract_mesh(shape)
    lo, hi = mesh.bounds
    assert abs(np.max(hi - lo) - 1.0) < 1e-2
    assert np.all(np.abs((lo + hi) / 2) < 1e-2)
    assert mesh.is_watertight
    assert mesh.volume > 1e-3  # non-degenerate
    pts = rng.uniform(-0.55, 0.55, (6000, 3))
    agree = np.mean(_mesh_occupancy(mesh, pts) == shape.contains(pts))
    assert agree >= 0.99


def test_families_stand_on_the_floor_in_metres():
    # Room composition needs metric shapes standing on y = 0.
    for name, fam in shapes.FAMILIES.items():
        if name == "csg":
            continue
        for seed in (5, 6):
            lo, _ = shapes.solid_bounds(fam(np.random.default_rng(seed)), res=48)
            assert abs(lo[1]) < 0.05, (name, seed)


def test_random_shape_is_deterministic_and_respects_families():
    s1, n1 = shapes.random_shape(np.random.default_rng([4, 2]))
    s2, n2 = shapes.random_shape(np.random.default_rng([4, 2]))
    p = np.random.default_rng(0).uniform(-0.5, 0.5, (500, 3))
    assert n1 == n2 and np.array_equal(s1.sdf(p), s2.sdf(p))
    for k in range(5):
        _, name = shapes.random_shape(np.random.default_rng(k), families=["mug", "car"])
        assert name in ("mug", "car")
    with pytest.raises(ValueError):
        shapes.random_shape(np.random.default_rng(0), families=["spaceship"])


# ----------------------------------------------------------------------------- prepare


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng([2, 0])
    shape = shapes.canonicalize(shapes.table(rng))
    return shape, prepare.prepare_sample(shape, np.random.default_rng(7), **SMALL)


def test_prepare_sample_keys_shapes_and_labels(sample):
    shape, out = sample
    assert out["points"].dtype == np.float16 and out["points"].shape == (4000, 3)
    assert np.abs(out["points"].astype(float)).max() <= 0.55
    occ = prepare.unpack_occupancies(out["occupancies"], 4000)
    # Labels are exact for the stored (float16) coordinates.
    assert np.array_equal(occ, shape.contains(out["points"].astype(np.float64)))
    near = prepare.unpack_occupancies(out["near_occupancies"], 2000)
    assert 0.2 < near.mean() < 0.8  # near-surface samples straddle the surface
    assert out["surface_points"].shape == out["surface_normals"].shape == (3000, 3)
    n = out["surface_normals"].astype(float)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=2e-3)
    # Surface points lie on the surface; normals point outward.
    s = out["surface_points"].astype(float)
    assert np.abs(shape.sdf(s)).max() < 5e-3
    assert np.mean(shape.sdf(s + 0.01 * n) > shape.sdf(s - 0.01 * n)) > 0.97
    assert out["voxels"].shape == (32, 32, 32) and out["voxels"].dtype == bool
    assert out["images"].shape == (2, 96, 96, 3) and out["images"].dtype == np.uint8
    assert out["camera_K"].shape == (2, 3, 3) and out["camera_Rt"].shape == (2, 3, 4)


def test_voxels_are_solid_and_consistent_with_occupancy(sample):
    shape, out = sample
    vox = out["voxels"]
    assert np.array_equal(vox, prepare.voxelize(shape))  # lattice path == direct path
    c = prepare.voxel_centres(32)
    inside_centre = shape.contains(c).reshape(32, 32, 32)
    assert np.all(vox[inside_centre])  # solid: every cell whose centre is inside
    # Every inside occupancy sample within the unit cube falls in an occupied cell.
    p = out["points"].astype(np.float64)
    occ = prepare.unpack_occupancies(out["occupancies"], len(p))
    keep = occ & np.all(np.abs(p) < 0.5, axis=1)
    idx = np.floor((p[keep] + 0.5) * 32).astype(int)
    assert np.all(vox[idx[:, 0], idx[:, 1], idx[:, 2]])
    # Surface cells are included too (binvox-style), so there are more than centre cells.
    assert vox.sum() >= inside_centre.sum()


def test_renders_white_background_object_centred_and_cameras_project(sample):
    shape, out = sample
    for img, K, Rt in zip(out["images"], out["camera_K"], out["camera_Rt"]):
        mask = img.min(axis=-1) < 250
        assert mask.mean() > 0.02
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        assert np.all(border == 255)
        ys, xs = np.nonzero(mask)
        S = img.shape[0]
        assert abs((xs.min() + xs.max() + 1) / 2 - S / 2) <= 2.5
        assert abs((ys.min() + ys.max() + 1) / 2 - S / 2) <= 2.5
        fill = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / S
        assert 0.45 <= fill <= 0.85
        # Projected surface points land on object pixels.
        s = out["surface_points"].astype(np.float64)[:500]
        cam = s @ Rt[:, :3].T + Rt[:, 3]
        uv = (cam @ K.T)[:, :2] / cam[:, 2:3]
        px = np.clip(np.floor(uv).astype(int), 0, S - 1)
        assert mask[px[:, 1], px[:, 0]].mean() > 0.9


def test_prepare_sample_is_deterministic():
    shape, _ = shapes.random_shape(np.random.default_rng([9, 1]))
    a = prepare.prepare_sample(shape, np.random.default_rng(3), **SMALL)
    b = prepare.prepare_sample(shape, np.random.default_rng(3), **SMALL)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_render_depth_and_mask_leave_every_other_output_and_the_random_stream_as_they_were(sample):
    shape, _ = sample
    mesh = prepare.canonical_lattice(shape).mesh
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    a = prepare.render_views(mesh, rng_a, n_views=2, image_size=64)
    b = prepare.render_views(mesh, rng_b, n_views=2, image_size=64, depth=True)
    assert set(b) == set(a) | {"depth", "mask"}
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert rng_a.random() == rng_b.random()  # the same draws were taken
    assert b["depth"].shape == (2, 64, 64) and b["depth"].dtype == np.float32
    assert np.array_equal(b["mask"], b["depth"] > 0) and b["mask"].any(axis=(1, 2)).all()
    for v in range(2):
        c = camera.Camera.from_matrix(b["camera_K"][v], 64)
        world = camera.camera_to_world(camera.unproject(b["depth"][v], b["mask"][v], c), b["camera_Rt"][v])
        # On the rendered surface: the marching-cubes mesh lies within a lattice cell (1/128) of the zero set.
        assert np.abs(shape.sdf(world)).max() < 4e-3
        # The silhouette is where the image shows the object, up to its antialiased edge.
        dark = b["images"][v].min(-1) < 250
        assert (b["mask"][v] & ~dark).sum() <= 0.02 * b["mask"][v].sum()


def test_prepare_sample_with_depth_keeps_every_other_array():
    shape, _ = shapes.random_shape(np.random.default_rng([9, 1]))
    a = prepare.prepare_sample(shape, np.random.default_rng(3), **TINY)
    b = prepare.prepare_sample(shape, np.random.default_rng(3), **TINY, depth=True)
    assert set(b) == set(a) | {"depth", "mask"}
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert b["depth"].shape == (1, 48, 48) and b["mask"].shape == (1, 48, 48)


# ----------------------------------------------------------------------------- user meshes


def test_user_mesh_preparation_and_errors(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=3.0)
    sphere.apply_translation((10, 0, 0))
    good = tmp_path / "sphere.obj"
    sphere.export(good)
    out = mesh_source.prepare_mesh(good, np.random.default_rng(0), **SMALL)
    ref = prepare.prepare_sample(sdf.Sphere(0.5), np.random.default_rng(0), **SMALL)
    assert out.keys() == ref.keys()
    for k in out:
        assert out[k].shape == ref[k].shape and out[k].dtype == ref[k].dtype, k
    p = out["points"].astype(np.float64)
    occ = prepare.unpack_occupancies(out["occupancies"], len(p))
    r = np.linalg.norm(p, axis=1)
    clear = np.abs(r - 0.5) > 0.01  # away from the faceting of the icosphere
    assert np.array_equal(occ[clear], r[clear] < 0.5)
    assert out["voxels"][16, 16, 16] and not out["voxels"][0, 0, 0]

    # A small hole is repaired.
    box = trimesh.creation.box()
    holed = trimesh.Trimesh(box.vertices, box.faces[1:], process=False)
    (tmp_path / "holed.stl").write_bytes(holed.export(file_type="stl"))
    assert mesh_source.load_canonical_mesh(tmp_path / "holed.stl").is_watertight

    # A big hole is not: clear error naming the file and the boundary edges.
    ico = trimesh.creation.icosphere(subdivisions=3)
    keep = ico.triangles_center[:, 2] < 0.7
    open_mesh = trimesh.Trimesh(ico.vertices, ico.faces[keep], process=False)
    bad = tmp_path / "open.ply"
    open_mesh.export(bad)
    with pytest.raises(InputError, match=r"not watertight \(\d+ boundary edges\)") as err:
        mesh_source.prepare_mesh(bad, np.random.default_rng(0), **SMALL)
    assert err.value.source == str(bad)

    # The same meshes as a dataset source: good files work, a bad one stops the build clearly.
    src = tmp_path / "src"
    src.mkdir()
    sphere.export(src / "ball.off")
    cache.build_dataset(tmp_path / "ds", None, 0, workers=1, source=src, prepare_kwargs=TINY)
    item = cache.ShardDataset(tmp_path / "ds", "voxels", n_query=32)[0]
    assert item["family"] == "ball" and item["inputs"].shape == (32, 32, 32)
    open_mesh.export(src / "open.ply")
    with pytest.raises(InputError, match="not watertight"):
        cache.build_dataset(tmp_path / "ds2", None, 0, workers=1, source=src, prepare_kwargs=TINY)


# ----------------------------------------------------------------------------- cache



def _shards(folder):
    return sorted(p for p in os.listdir(folder) if p.startswith("shard_"))


def test_cache_deterministic_across_workers_and_resumable(tmp_path):
    kw = dict(shard_size=2, families=["bench", "lamp", "bottle", "table"], prepare_kwargs=TINY)
    a, b = tmp_path / "a", tmp_path / "b"
    seen = []
    cache.build_dataset(a, 5, 123, workers=1, progress=lambda d, n: seen.append((d, n)), **kw)
    cache.build_dataset(b, 5, 123, workers=2, **kw)
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    assert _shards(a) == _shards(b) == ["shard_00000.npz", "shard_00001.npz", "shard_00002.npz"]
    for name in _shards(a):
        za, zb = np.load(a / name), np.load(b / name)
        assert za.files == zb.files
        for k in za.files:
            assert np.array_equal(za[k], zb[k]), (name, k)
    manifest = json.loads((a / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 123 and manifest["n_shapes"] == 5 and manifest["complete"]
    assert manifest["generator_version"] == cache.GENERATOR_VERSION

    # Resume: only the missing shard is regenerated, identically.
    before = {n: (a / n).stat().st_mtime_ns for n in _shards(a)}
    ref = dict(np.load(a / "shard_00001.npz"))
    (a / "shard_00001.npz").unlink()
    seen.clear()
    cache.build_dataset(a, 5, 123, workers=1, progress=lambda d, n: seen.append((d, n)), **kw)
    assert seen[0] == (3, 5)  # shards 0 and 2 were kept
    after = {n: (a / n).stat().st_mtime_ns for n in _shards(a)}
    assert after["shard_00000.npz"] == before["shard_00000.npz"]
    assert after["shard_00002.npz"] == before["shard_00002.npz"]
    regen = np.load(a / "shard_00001.npz")
    for k, v in ref.items():
        assert np.array_equal(regen[k], v), k

    with pytest.raises(InputError, match="other settings"):
        cache.build_dataset(a, 5, 124, workers=1, **kw)


def test_shard_dataset_items(tmp_path):
    cache.build_dataset(tmp_path, 3, 0, shard_size=2, workers=1, families=["mug", "chair"], prepare_kwargs=TINY)
    torch.manual_seed(0)
    ds = cache.ShardDataset(tmp_path, "points", n_query=256, near_fraction=0.5)
    assert len(ds) == 3
    it = ds[2]
    assert it["inputs"].shape == (300, 3) and it["points"].shape == (256, 3) and it["occ"].shape == (256,)
    assert it["family"] in ("mug", "chair") and it["index"] == 2
    assert set(np.unique(it["occ"].numpy())) <= {0.0, 1.0}
    vox = cache.ShardDataset(tmp_path, "voxels", n_query=64)[0]
    assert vox["inputs"].shape == (32, 32, 32) and vox["inputs"].dtype == torch.float32
    img = cache.ShardDataset(tmp_path, "image", n_query=64)[1]
    x = img["inputs"]
    assert x.shape == (3, 224, 224) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x[:, 0, 0].min()) == 1.0  # white corner
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=0)
    batch = next(iter(loader))
    assert batch["inputs"].shape == (3, 300, 3)
    with pytest.raises(InputError):
        cache.ShardDataset(tmp_path / "nothing", "points")


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    a = np.round(a, 6)
    return a[np.lexsort(a.T[::-1])]


@pytest.mark.parametrize("n", [cache.UPRIGHT_SYMMETRIES, cache.BOX_SYMMETRIES])
def test_box_symmetries_form_the_group_and_move_voxels_like_points(n):
    mats = [cache.box_symmetry(k) for k in range(n)]
    keys = {tuple(np.round(m).astype(int).ravel()) for m in mats}
    assert len(keys) == n
    for k, m in enumerate(mats):
        np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-7)
        assert (m[1, 1] == 1) == (k < cache.UPRIGHT_SYMMETRIES)  # the first 8, and only they, keep y up
        for other in mats:  # closed under composition
            assert tuple(np.round(m @ other).astype(int).ravel()) in keys
    rng = np.random.default_rng(0)
    grid = (rng.random((8, 8, 8)) < 0.3).astype(np.float32)
    centres = -0.5 + (np.argwhere(grid > 0) + 0.5) / 8
    for m in mats:
        moved = cache.transform_voxels(grid, m)
        got = -0.5 + (np.argwhere(moved > 0) + 0.5) / 8
        assert np.array_equal(_sorted_rows(got), _sorted_rows(centres @ m.T))


@pytest.mark.parametrize("any_up", [False, True])
def test_augmented_items_are_one_symmetry_of_the_stored_shape(tmp_path, any_up):
    cache.build_dataset(tmp_path, 1, 0, workers=1, families=["chair"], prepare_kwargs=TINY)
    stored = np.load(tmp_path / "shard_00000.npz")
    queries = np.concatenate([stored["points"][0], stored["near_points"][0]]).astype(np.float32)
    labels = np.concatenate([prepare.unpack_occupancies(stored["occupancies"][0], len(stored["points"][0])),
                             prepare.unpack_occupancies(stored["near_occupancies"][0], len(stored["near_points"][0]))])
    tree = cKDTree(queries)
    surface = cKDTree(stored["surface_points"][0].astype(np.float32))
    torch.manual_seed(0)
    ds = cache.ShardDataset(tmp_path, "points", n_query=128, near_fraction=0.5, augment=True, any_up=any_up)
    used = set()
    for _ in range(24):
        item = ds[0]
        p, x = item["points"].numpy(), item["inputs"].numpy()
        for k in range(cache.BOX_SYMMETRIES):
            m = cache.box_symmetry(k)
            dist, idx = tree.query(p @ m)  # m is orthogonal: p @ m undoes p @ m.T
            if dist.max() < 2e-3:
                assert np.array_equal(labels[idx], item["occ"].numpy())
                assert np.median(surface.query(x @ m)[0]) < 0.02  # inputs moved with the queries
                used.add(k)
                break
        else:
            raise AssertionError("item is no symmetry of the stored shape")
    assert len(used) >= 4  # the symmetries are actually drawn
    assert any(k >= cache.UPRIGHT_SYMMETRIES for k in used) == any_up  # y stays up unless asked
    assert not cache.ShardDataset(tmp_path, "image", augment=True).augment


def test_point_and_voxel_data_generate_without_open3d(tmp_path):
    # A GPU box or a slim container may lack open3d: only the renders need it.
    blocker = tmp_path / "blocked" / "open3d"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("open3d blocked by the test")\n', encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "blocked"), os.environ.get("PYTHONPATH", "")])}
    script = (
        "import sys, numpy as np\n"
        "from occrecon.data.shapes import random_shape\n"
        "from occrecon.data.prepare import prepare_sample\n"
        "shape, _ = random_shape(np.random.default_rng(0))\n"
        "out = prepare_sample(shape, np.random.default_rng(0), n_uniform=500, n_near=500, n_surface=500, n_views=int(sys.argv[1]))\n"
        "print(sorted(out))\n"
    )
    without = subprocess.run([sys.executable, "-c", script, "0"], env=env, capture_output=True, text=True, timeout=300)
    assert without.returncode == 0, without.stderr
    assert "voxels" in without.stdout and "images" not in without.stdout
    renders = subprocess.run([sys.executable, "-c", script, "1"], env=env, capture_output=True, text=True, timeout=300)
    assert renders.returncode != 0 and "open3d blocked by the test" in renders.stderr


# ----------------------------------------------------------------------------- partial clouds from depth


def test_degrade_depth_is_seeded_drops_edges_and_adds_nothing():
    depth = np.zeros((40, 40))
    depth[5:35, 5:35] = 2.0
    depth[15:25, 15:25] = 1.5  # a step: a discontinuity inside the object
    assert np.array_equal(partial.degrade_depth(depth, np.random.default_rng(0), partial.CLEAN), depth.astype(np.float32))
    spec = partial.DepthDegradation(noise=0.01, holes=(2, 2), dropout=0.0, edge_extra_px=0)
    a = partial.degrade_depth(depth, np.random.default_rng(1), spec)
    assert np.array_equal(a, partial.degrade_depth(depth, np.random.default_rng(1), spec))
    assert a.dtype == np.float32 and not ((a > 0) & (depth == 0)).any()
    # The silhouette's border pixels and both sides of the step are dropped.
    assert (a[5, 5:35] == 0).all() and (a[5:35, 34] == 0).all()
    assert (a[15, 16:24] == 0).all() and (a[14, 16:24] == 0).all()
    # Noise along the rays: about 1% of the depth.
    kept = (a > 0) & (depth == 2.0)
    rel = a[kept] / 2.0 - 1.0
    assert 0.007 < rel.std() < 0.013 and abs(rel.mean()) < 0.003
    assert (a > 0).sum() < (depth > 0).sum() - 100  # holes and edges took pixels
    edges = partial.discontinuities(depth, 0.03)
    assert edges[5, 20] and edges[15, 20] and edges[14, 20] and not edges[20, 20] and not edges[10, 10]


SMALL_PARTIAL = partial.PartialSpec(image_size=64, n_points=400, n_uniform=300, n_near=300)


def test_partial_item_is_deterministic_with_exact_labels_of_the_full_shape(sample):
    shape, _ = sample
    a = partial.partial_item(shape, np.random.default_rng(4), SMALL_PARTIAL)
    b = partial.partial_item(shape, np.random.default_rng(4), SMALL_PARTIAL)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    other = partial.partial_item(shape, np.random.default_rng(5), SMALL_PARTIAL)
    assert not np.array_equal(a["inputs"], other["inputs"])
    assert a["inputs"].shape == (400, 3) and a["inputs"].dtype == np.float32
    assert a["points"].shape == (600, 3) and a["occ"].shape == (600,) and a["occ"].dtype == bool
    assert 25 <= a["fov_deg"] <= 55 and 0 <= a["noise"] <= 0.01
    # Labels: the full shape's occupancy at the stored query points, mapped back to the canonical frame.
    frame = camera.ViewerFrame(tuple(float(x) for x in a["frame_centre"]), float(a["frame_scale"]))
    world = camera.camera_to_world(frame.to_camera(a["points"].astype(np.float64)), a["camera_Rt"])
    assert np.array_equal(a["occ"], shape.contains(world))
    assert 0.05 < a["occ"][300:].mean() < 0.95  # near-surface queries straddle the surface
    assert np.abs(a["points"]).max() <= 0.55 + 1e-6


def test_partial_item_inputs_are_the_visible_surface_in_the_viewer_frame(sample):
    shape, _ = sample
    spec = partial.PartialSpec(image_size=64, n_points=400, n_uniform=100, n_near=100, noise=(0.0, 0.0))
    item = partial.partial_item(shape, np.random.default_rng(6), spec)
    frame = camera.ViewerFrame(tuple(float(x) for x in item["frame_centre"]), float(item["frame_scale"]))
    cam_points = frame.to_camera(item["inputs"].astype(np.float64))
    # Noise-free inputs lie on the surface, project into the silhouette and face the camera.
    world = camera.camera_to_world(cam_points, item["camera_Rt"])
    assert np.abs(shape.sdf(world)).max() < 4e-3
    c = camera.Camera.from_matrix(item["camera_K"], 64)
    assert camera.carve(cam_points, item["mask"], c).all()
    eye = camera.camera_to_world(np.zeros((1, 3)), item["camera_Rt"])[0]
    eps = 1e-3
    grad = np.stack([(shape.sdf(world + eps * e) - shape.sdf(world - eps * e)) / (2 * eps) for e in np.eye(3)], 1)
    facing = np.einsum("ij,ij->i", grad, eye - world)
    assert np.mean(facing > 0) > 0.95
    # The frame is the visible points' own box: centred, longest side 1 (the subsample spans nearly all of it).
    lo, hi = item["inputs"].min(0), item["inputs"].max(0)
    assert np.abs(item["inputs"]).max() <= 0.5 + 1e-5 and 0.9 < (hi - lo).max() <= 1.0 + 1e-5


def test_generate_partial_item_draws_the_datasets_shape():
    a = partial.generate_partial_item(3, 2, view=0, spec=SMALL_PARTIAL)
    _, family = shapes.random_shape(np.random.default_rng([3, 2]))
    assert str(a["family"]) == family and int(a["index"]) == 2 and int(a["view"]) == 0
    b = partial.generate_partial_item(3, 2, view=1, spec=SMALL_PARTIAL)
    assert not np.array_equal(a["camera_Rt"], b["camera_Rt"])


def test_partial_dataset_is_deterministic_resumable_and_readable(tmp_path):
    kw = dict(views=2, shard_size=3, families=["bench", "bottle", "mug"], spec=SMALL_PARTIAL)
    a, b = tmp_path / "a", tmp_path / "b"
    manifest = cache.build_partial_dataset(a, 2, 7, workers=1, **kw)
    cache.build_partial_dataset(b, 2, 7, workers=2, **kw)
    assert manifest["n_items"] == 4 and manifest["kind"] == "partial" and _shards(a) == ["shard_00000.npz", "shard_00001.npz"]
    for name in _shards(a):
        za, zb = np.load(a / name), np.load(b / name)
        for k in za.files:
            assert np.array_equal(za[k], zb[k]), (name, k)
    # Item 3 is view 1 of shape 1, exactly as generated alone; a deleted shard comes back identically.
    z = np.load(a / "shard_00001.npz")
    alone = partial.generate_partial_item(7, 1, 1, ["bench", "bottle", "mug"], SMALL_PARTIAL)
    assert int(z["index"][0]) == 1 and int(z["view"][0]) == 1
    assert np.array_equal(z["inputs"][0], alone["inputs"]) and np.array_equal(z["occ"][0], alone["occ"])
    ref = dict(z)
    (a / "shard_00001.npz").unlink()
    seen = []
    cache.build_partial_dataset(a, 2, 7, workers=1, progress=lambda d, n: seen.append((d, n)), **kw)
    assert seen[0] == (3, 4)
    regen = np.load(a / "shard_00001.npz")
    for k, v in ref.items():
        assert np.array_equal(regen[k], v), k
    with pytest.raises(InputError, match="other settings"):
        cache.build_partial_dataset(a, 2, 8, workers=1, **kw)
    # Reading: every view of the chosen shapes, queries with exact labels.
    ds = cache.PartialDataset(a, n_query=64, near_fraction=0.5, shapes=[1])
    assert len(ds) == 2
    torch.manual_seed(0)
    item = ds[1]
    assert item["index"] == 1 and item["view"] == 1 and item["inputs"].shape == (400, 3)
    assert item["points"].shape == (64, 3) and item["occ"].shape == (64,)
    with pytest.raises(InputError, match="not a partial-cloud dataset"):
        cache.PartialDataset(_plain_dataset(tmp_path))


def _plain_dataset(tmp_path):
    out = tmp_path / "plain"
    cache.build_dataset(out, 1, 0, workers=1, families=["mug"], prepare_kwargs=dict(TINY, n_views=0))
    return out
