"""Tests of the procedural rooms and crop items for the scene model; small rooms and coarse lattices keep them fast."""

from __future__ import annotations

import json
import os

import numpy as np
import open3d as o3d
import pytest
import torch
import trimesh

from occrecon.data import cache, rooms
from occrecon.errors import InputError

SIZE = ((3.0, 4.0), (2.4, 2.6), (3.0, 4.0))
ROOM = dict(size_range=SIZE, n_furniture=(4, 7), n_clutter=(1, 3))
COARSE = dict(mesh_cell=0.02, voxel_size=0.04, block_size=0.64)
PREP = dict(COARSE, surface_density=400.0, uniform_density=400.0, near_density=200.0)


def _room(seed: int, i: int) -> rooms.Room:
    return rooms.random_room(np.random.default_rng([seed, i]), **ROOM)


def _scene(mesh: trimesh.Trimesh) -> o3d.t.geometry.RaycastingScene:
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)), o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    return scene


@pytest.fixture(scope="module")
def prepared():
    room = _room(0, 0)
    mesh = rooms.room_mesh(room, **COARSE)
    data = rooms.prepare_room(room, np.random.default_rng(1), **PREP)
    return room, mesh, data


# ----------------------------------------------------------------------------- rooms


@pytest.mark.parametrize("i", range(4))
def test_rooms_are_metric_with_floor_at_zero(i):
    room = _room(1, i)
    W, H, D = room.size
    for v, (lo, hi) in zip(room.size, SIZE):
        assert lo <= v <= hi
    floor = next(p for p in room.parts if p.name == "floor")
    probe = np.array([[0.0, -0.002, 0.0], [0.0, 0.002, 0.0]])
    assert floor.shape.sdf(probe)[0] < 0 < floor.shape.sdf(probe)[1]
    lo, hi = room.bounds
    # Floor slab <= 0.2 m, walls <= 0.25 m, ceiling <= 0.2 m: nothing else reaches out.
    assert lo[1] >= -0.2 - 1e-9 and hi[1] <= H + 0.2 + 1e-9
    assert np.all(np.abs([lo[0], hi[0]]) <= W / 2 + 0.25 + 1e-9) and np.all(np.abs([lo[2], hi[2]]) <= D / 2 + 0.25 + 1e-9)
    assert 2 <= len(room.walls) <= 4 and len({p.name for p in room.parts if p.name.startswith("wall")}) == len(room.walls)
    assert room.has_ceiling == any(p.name == "ceiling" for p in room.parts)
    furniture = [p for p in room.parts if p.kind == rooms.FURNITURE]
    assert furniture and all(p.name in rooms.INDOOR for p in furniture)
    for p in room.parts:
        if p.kind != rooms.STRUCTURE:
            m = p.transform
            s = np.cbrt(np.linalg.det(m[:3, :3]))
            assert np.allclose(m[:3, :3] @ m[:3, :3].T, s * s * np.eye(3)) and np.allclose(m[:3, 1], [0, s, 0])
            if p.kind == rooms.FURNITURE:
                assert 0.8 - 1e-9 <= s <= 1.2 + 1e-9  # native metric size +-20%
            # Inside the interior footprint and under the ceiling.
            plo, phi = p.bounds
            if p.on == "floor":
                assert plo[0] >= -W / 2 and phi[0] <= W / 2 and plo[2] >= -D / 2 and phi[2] <= D / 2
            assert phi[1] <= H


def test_furniture_stands_on_floor_or_support():
    rng = np.random.default_rng(0)
    n_floor = n_support = 0
    for i in range(8):
        room = _room(2, i)
        for p in room.parts:
            if p.kind == rooms.STRUCTURE:
                continue
            lo, hi = p.bounds
            if p.on == "floor":
                n_floor += 1
                xz = rng.uniform(lo[[0, 2]], hi[[0, 2]], (20000, 2))
                at = lambda y: np.stack([xz[:, 0], np.full(len(xz), y), xz[:, 1]], 1)
                # Its solid starts at the floor. The families stand on y = 0 up to ~2 cm: splayed
                # chair legs dip ~1 cm, a lamp's disk base reaches 0.025 - its half height, a
                # legless sofa/cabinet can float by its leg height (< 2 cm).
                assert (p.shape.sdf(at(0.025)) < 0).any(), p.name
                assert not (p.shape.sdf(at(-0.025)) < 0).any(), p.name
            else:
                n_support += 1
                sup = room.parts[int(p.on)]
                assert sup.name in ("table", "cabinet")
                x, y, z = p.transform[:3, 3]
                # The object's origin (its bottom centre) sits on the support's top (2 mm search step).
                assert sup.shape.sdf(np.array([[x, y - 0.001, z]]))[0] < 0
                assert sup.shape.sdf(np.array([[x, y + 0.0021, z]]))[0] > 0
    assert n_floor > 10 and n_support > 0


def test_room_union_is_a_bounded_sdf():
    room = _room(3, 0)
    lo, hi = room.bounds
    p = np.random.default_rng(0).uniform(lo, hi, (3000, 3))
    d = room.shape.sdf(p)
    # Bounding-box culling keeps the sign of the union evaluated part by part.
    exact = np.min([part.shape.sdf(p) for part in room.parts], axis=0)
    assert np.array_equal(d < 0, exact < 0) and np.isfinite(d).all()


# ----------------------------------------------------------------------------- prepared arrays


def test_prepare_room_keys_dtypes_and_bins(prepared):
    room, _, d = prepared
    for s in rooms.POINT_SETS:
        pts, offs = d[f"{s}_points"], d[f"{s}_offsets"]
        assert pts.dtype == np.float32 and pts.ndim == 2 and pts.shape[1] == 3
        assert offs[0] == 0 and offs[-1] == len(pts) and np.all(np.diff(offs) >= 0)
        assert len(offs) == int(np.prod(d["bin_dims"])) + 1
        # Sorted by bin: every point's bin matches its offsets slot.
        ids = rooms.bin_ids(pts, d["bin_origin"], d["bin_dims"], float(d["bin_size"]))
        assert np.array_equal(ids, np.repeat(np.arange(len(offs) - 1), np.diff(offs)))
    assert d["surface_normals"].shape == d["surface_points"].shape and d["surface_normals"].dtype == np.float16
    for key, s in rooms.PACKED.items():
        assert d[key].dtype == np.uint8 and len(d[key]) == (len(d[f"{s}_points"]) + 7) // 8
    slo, shi = d["sample_bounds"]
    assert np.all(d["uniform_points"] >= slo.astype(np.float32)) and np.all(d["uniform_points"] <= shi.astype(np.float32))
    area = float(d["surface_area"])
    assert abs(len(d["surface_points"]) - PREP["surface_density"] * area) < 0.05 * PREP["surface_density"] * area
    assert np.allclose(d["size"], room.size) and d["bounds"].shape == (2, 3)
    assert d["bounds"][0, 1] >= -0.2 - 0.05 and d["bounds"][1, 1] <= room.size[1] + 0.25


def test_occupancy_labels_agree_with_sdf_and_mesh(prepared):
    room, mesh, d = prepared
    scene = _scene(mesh)
    for s, key in (("uniform", "uniform_occ"), ("near", "near_occ")):
        pts = d[f"{s}_points"]
        occ = np.unpackbits(d[key], count=len(pts)).astype(bool)
        sdf = room.shape.sdf(pts)
        assert np.array_equal(occ, sdf < 0)  # exact at the stored float32 coordinates
        assert 0.005 < occ.mean() < 0.95
        far = np.abs(sdf) > 0.06  # the mesh is only accurate to a cell (2-4 cm here)
        in_mesh = scene.compute_occupancy(o3d.core.Tensor(pts[far]), nsamples=3).numpy() > 0.5
        assert np.mean(in_mesh == occ[far]) > 0.99, s


def test_surface_points_lie_on_the_extracted_mesh(prepared):
    room, mesh, d = prepared
    pts = d["surface_points"]
    dist = _scene(mesh).compute_distance(o3d.core.Tensor(pts)).numpy()
    assert dist.max() < 1e-4  # sampled block by block from the same surface room_mesh returns
    sdf = room.shape.sdf(pts)
    assert np.abs(sdf).max() <= np.sqrt(3) * COARSE["voxel_size"] and np.median(np.abs(sdf)) < 0.005
    # Normals point outward: the SDF grows along them.
    n = d["surface_normals"].astype(np.float64)
    grow = room.shape.sdf(pts + 0.01 * n) - room.shape.sdf(pts - 0.01 * n)
    assert np.mean(grow > 0) > 0.95
    assert abs(mesh.area - float(d["surface_area"])) < 1e-6 * mesh.area


def test_scan_mask_drops_ceiling_exterior_and_holes(prepared):
    room, _, d = prepared
    pts = d["surface_points"]
    vis = np.unpackbits(d["scan_mask"], count=len(pts)).astype(bool)
    W, H, D = room.size
    p = pts[vis]
    assert np.all(p[:, 1] < H) and np.all(p[:, 1] > -0.01)
    assert np.all(np.abs(p[:, 0]) < W / 2 + 0.01) and np.all(np.abs(p[:, 2]) < D / 2 + 0.01)
    interior = (np.abs(pts[:, 0]) < W / 2 - 0.01) & (np.abs(pts[:, 2]) < D / 2 - 0.01)
    interior &= (pts[:, 1] > 0.01) & (pts[:, 1] < H - 0.01)
    assert 0.5 < vis[interior].mean() < 1.0  # holes remove some interior points, not most
    # Holes off, ceiling and exterior kept: everything is visible.
    keep = rooms.scan_mask(room, pts, np.random.default_rng(0), area=100.0, holes_per_m2=0.0,
                           drop_ceiling=False, drop_exterior=False)
    assert keep.all()
    cloud, normals = rooms.scan_cloud(d, np.random.default_rng(0), noise_std=0.005, max_points=1000)
    assert cloud.shape == normals.shape == (1000, 3) and cloud.dtype == np.float32


def test_default_lattice_on_a_small_room():
    room = rooms.random_room(np.random.default_rng(4), size_range=((3, 3), (2.4, 2.4), (3, 3)), n_furniture=(3, 3))
    d = rooms.prepare_room(room, np.random.default_rng(0), surface_density=300.0, uniform_density=200.0, near_density=100.0)
    pts = d["surface_points"]
    sdf = room.shape.sdf(pts)
    near_furniture = np.zeros(len(pts), dtype=bool)
    for p in room.parts:
        if p.kind != rooms.STRUCTURE:
            near_furniture |= np.all((pts >= p.bounds[0] - 0.05) & (pts <= p.bounds[1] + 0.05), axis=1)
    # 1 cm lattice around furniture, 2 cm on floor/walls (flat faces come out exact).
    assert near_furniture.any() and np.abs(sdf[near_furniture]).max() <= np.sqrt(3) * 0.01
    assert np.abs(sdf).max() <= np.sqrt(3) * 0.02 and np.median(np.abs(sdf)) < 1e-3


def test_room_generation_is_deterministic():
    a = rooms.generate_room_item(5, 2, ROOM, PREP)
    b = rooms.generate_room_item(5, 2, ROOM, PREP)
    c = rooms.generate_room_item(5, 3, ROOM, PREP)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert not np.array_equal(a["size"], c["size"])


# ----------------------------------------------------------------------------- dataset and crops


def _shards(folder):
    return sorted(p for p in os.listdir(folder) if p.startswith("shard_"))


@pytest.fixture(scope="module")
def room_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("rooms")
    seen = []
    cache.build_room_dataset(root, 3, 7, shard_size=2, workers=1, room_kwargs=ROOM, prepare_kwargs=PREP,
                             progress=lambda d, n: seen.append((d, n)))
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
    return root


def test_room_dataset_layout_and_resume(room_dataset, tmp_path):
    root = room_dataset
    assert _shards(root) == ["shard_00000.npz", "shard_00001.npz"]
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["kind"] == "rooms" and manifest["n_rooms"] == 3 and manifest["complete"]
    # The shard holds exactly the per-room arrays, concatenated.
    z = cache.open_npz_memmap(root / "shard_00000.npz")
    one = rooms.generate_room_item(7, 1, ROOM, PREP)
    b0, b1 = int(z["bin_start"][1]), int(z["bin_start"][2])
    offs = np.asarray(z["surface_offsets"][b0:b1])
    assert np.array_equal(z["surface_points"][offs[0] : offs[-1]], one["surface_points"])
    assert np.array_equal(offs - offs[0], one["surface_offsets"])
    occ = rooms.unpack_ranges(z["uniform_occ"], np.array([[int(z["uniform_offsets"][b0]), int(z["uniform_offsets"][b1 - 1])]]))
    assert np.array_equal(occ, np.unpackbits(one["uniform_occ"], count=len(one["uniform_points"])).astype(bool))

    before = {n: (root / n).stat().st_mtime_ns for n in _shards(root)}
    ref = dict(np.load(root / "shard_00001.npz"))
    (root / "shard_00001.npz").unlink()
    seen = []
    cache.build_room_dataset(root, 3, 7, shard_size=2, workers=1, room_kwargs=ROOM, prepare_kwargs=PREP,
                             progress=lambda d, n: seen.append((d, n)))
    assert seen[0] == (2, 3)  # shard 0 was kept
    assert (root / "shard_00000.npz").stat().st_mtime_ns == before["shard_00000.npz"]
    regen = np.load(root / "shard_00001.npz")
    for k, v in ref.items():
        assert np.array_equal(regen[k], v), k
    with pytest.raises(InputError, match="other settings"):
        cache.build_room_dataset(root, 3, 8, shard_size=2, workers=1, room_kwargs=ROOM, prepare_kwargs=PREP)
    cache.build_dataset(tmp_path, 1, 0, workers=1, families=["mug"],
                        prepare_kwargs=dict(n_uniform=100, n_near=100, n_surface=100, n_views=0))
    with pytest.raises(InputError, match="not a room dataset"):
        cache.CropDataset(tmp_path)


def test_crop_items(room_dataset):
    s, q = 1.5, 0.75
    ds = cache.CropDataset(room_dataset, input_size=s, query_size=q, n_points=512, n_query=256, near_fraction=0.5)
    assert len(ds) == 3
    torch.manual_seed(0)
    room_shapes = {i: rooms.random_room(np.random.default_rng([7, i]), **ROOM).shape for i in range(3)}
    with_geometry = 0
    n_items = 24
    for k in range(n_items):
        it = ds[k % 3]
        assert it["points"].shape == (512, 3) and it["query"].shape == (256, 3) and it["occ"].shape == (256,)
        assert it["lower"].shape == it["upper"].shape == (3,)
        assert all(it[key].dtype == torch.float32 for key in ("points", "query", "occ", "lower", "upper"))
        lower, upper = it["lower"].numpy(), it["upper"].numpy()
        assert np.allclose(upper - lower, s, atol=1e-5)
        p = it["points"].numpy()
        assert np.all(p >= lower) and np.all(p < upper)
        centre = (lower + upper) / 2
        qp = it["query"].numpy()
        assert np.all(qp >= centre - q / 2 - 1e-5) and np.all(qp < centre + q / 2 + 1e-5)
        occ = it["occ"].numpy()
        assert set(np.unique(occ)) <= {0.0, 1.0}
        assert np.array_equal(occ > 0.5, room_shapes[it["index"]].sdf(qp) < 0)
        with_geometry += len(np.unique(p, axis=0)) > 50
    assert with_geometry >= 0.8 * n_items
    # Reproducible under torch's seed; batches through a DataLoader.
    torch.manual_seed(3)
    a = ds[1]
    torch.manual_seed(3)
    b = ds[1]
    assert torch.equal(a["points"], b["points"]) and torch.equal(a["query"], b["query"])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3, num_workers=0)))
    assert batch["points"].shape == (3, 512, 3) and batch["lower"].shape == (3, 3)
    with pytest.raises(ValueError):
        cache.CropDataset(room_dataset, input_size=1.0, query_size=2.0)
