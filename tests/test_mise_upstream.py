"""`--mise upstream` and `--no-normalize`: upstream's MISE rule, value filling and point order, exactly.

The oracle is :class:`LiteralMise`, a plain, slow octree written from the facts of upstream's
libmise (upstream.md §3.2: voxels and grid points in creation order, a point marks the leaf
holding each of the 8 fine cells around it, leaves below the finest level with both marks are
split in voxel-list order, rounds until nothing is left, NaNs copied forward along x, y, z).
The vectorised implementation must match it point for point, round for round.
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path

import mcubes
import numpy as np
import pytest
import torch

import occrecon
from occrecon.config import InputSpec
from occrecon.errors import OptionError
from occrecon.extract import MiseOctree, UpstreamMise, extract_grid, extract_grid_upstream, marching_cubes, upstream_logit
from occrecon.extract.mise_upstream import fill_forward, upstream_query_points
from occrecon.loading import save_model_folder
from occrecon.nets import build_network, upstream_arithmetic
from occrecon.options import ReconstructOptions
from occrecon.preprocess import prepare_input

from tiny_models import TINY_CONFIGS


class LiteralMise:
    """Upstream's octree as plain Python lists and loops (slow: a test oracle for small lattices)."""

    def __init__(self, resolution0: int, depth: int, threshold: float):
        self.r0, self.depth, self.threshold = resolution0, depth, threshold
        self.size0 = 1 << depth
        self.resolution = resolution0 * self.size0
        self.voxels: list[dict] = []
        for i, j, k in itertools.product(range(resolution0), repeat=3):
            self.voxels.append({"loc": (i * self.size0, j * self.size0, k * self.size0), "level": 0, "leaf": True, "children": None})
        self.points: list[dict] = []
        self.index: dict[tuple[int, int, int], int] = {}
        for i, j, k in itertools.product(range(resolution0 + 1), repeat=3):
            self._add((i * self.size0, j * self.size0, k * self.size0))

    def _add(self, loc: tuple[int, int, int]) -> None:
        self.index[loc] = len(self.points)
        self.points.append({"loc": loc, "value": 0.0, "known": False})

    def query(self) -> list[tuple[int, int, int]]:
        return [p["loc"] for p in self.points if not p["known"]]

    def update(self, locs: list[tuple[int, int, int]], values: np.ndarray) -> None:
        for loc, value in zip(locs, values):
            point = self.points[self.index[loc]]
            point["value"], point["known"] = float(value), True
        self._subdivide()

    def _voxel_of(self, loc: tuple[int, int, int]) -> int:
        """The leaf voxel holding fine cell ``loc``, or -1 outside the lattice."""
        if not all(0 <= c < self.resolution for c in loc):
            return -1
        coarse = [c >> self.depth for c in loc]
        idx = (coarse[0] * self.r0 + coarse[1]) * self.r0 + coarse[2]
        rel = [c - (q << self.depth) for c, q in zip(loc, coarse)]
        size = self.size0
        while not self.voxels[idx]["leaf"]:
            size >>= 1
            child = [1 if r >= size else 0 for r in rel]
            idx = self.voxels[idx]["children"][child[0] * 4 + child[1] * 2 + child[2]]
            rel = [r - c * size for r, c in zip(rel, child)]
        return idx

    def _subdivide(self) -> None:
        positive = [False] * len(self.voxels)
        negative = [False] * len(self.voxels)
        for point in self.points:
            if not point["known"]:
                continue
            for offset in itertools.product((-1, 0), repeat=3):
                idx = self._voxel_of(tuple(c + o for c, o in zip(point["loc"], offset)))
                if idx == -1:
                    continue
                positive[idx] |= point["value"] >= self.threshold
                negative[idx] |= point["value"] <= self.threshold
        for idx in range(len(positive)):
            voxel = self.voxels[idx]
            if voxel["leaf"] and voxel["level"] < self.depth and positive[idx] and negative[idx]:
                self._split(idx)

    def _split(self, idx: int) -> None:
        voxel = self.voxels[idx]
        size = 1 << (self.depth - voxel["level"] - 1)
        voxel["leaf"], voxel["children"] = False, []
        for i, j, k in itertools.product(range(2), repeat=3):
            voxel["children"].append(len(self.voxels))
            loc = (voxel["loc"][0] + i * size, voxel["loc"][1] + j * size, voxel["loc"][2] + k * size)
            self.voxels.append({"loc": loc, "level": voxel["level"] + 1, "leaf": True, "children": None})
        for i, j, k in itertools.product(range(3), repeat=3):
            loc = (voxel["loc"][0] + i * size, voxel["loc"][1] + j * size, voxel["loc"][2] + k * size)
            if loc not in self.index:
                self._add(loc)

    def to_dense(self) -> np.ndarray:
        n = self.resolution + 1
        out = np.full((n, n, n), np.nan)
        for point in self.points:
            out[point["loc"]] = point["value"]
        for i, j, k in itertools.product(range(1, n), range(n), range(n)):
            if math.isnan(out[i, j, k]):
                out[i, j, k] = out[i - 1, j, k]
        for i, j, k in itertools.product(range(n), range(1, n), range(n)):
            if math.isnan(out[i, j, k]):
                out[i, j, k] = out[i, j - 1, k]
        for i, j, k in itertools.product(range(n), range(n), range(1, n)):
            if math.isnan(out[i, j, k]):
                out[i, j, k] = out[i, j, k - 1]
        return out


def literal_rounds(field, resolution0: int, depth: int, threshold: float, box: float = 1.1) -> tuple[list[np.ndarray], np.ndarray]:
    """The oracle's rounds (the lattice indices queried, in order) and its dense lattice."""
    mise, rounds = LiteralMise(resolution0, depth, threshold), []
    locs = mise.query()
    while locs:
        indices = np.array(locs, dtype=np.int64)
        rounds.append(indices)
        coords = (box * (indices / mise.resolution - 0.5)).astype(np.float32)
        mise.update(locs, field(coords).astype(np.float64))
        locs = mise.query()
    return rounds, mise.to_dense()


def sphere(p: np.ndarray) -> np.ndarray:
    return (0.3 - np.linalg.norm(p, axis=1)).astype(np.float32)


def thin_slab(p: np.ndarray) -> np.ndarray:
    """A plate thinner than a coarse cell, tilted: upstream follows it round after round through neighbours."""
    return (0.04 - np.abs(p[:, 1] - 0.21 * p[:, 0] - 0.013)).astype(np.float32)


def wavy(p: np.ndarray) -> np.ndarray:
    return (np.sin(9 * p[:, 0]) * np.cos(7 * p[:, 1]) + np.sin(11 * p[:, 2] + 1) - 0.4).astype(np.float32)


def recording(field, rounds: list[np.ndarray]):
    def query(points: np.ndarray) -> np.ndarray:
        rounds.append(points.copy())
        return field(points)

    return query


@pytest.mark.parametrize("field", [sphere, thin_slab, wavy], ids=lambda f: f.__name__)
@pytest.mark.parametrize("resolution0, depth", [(4, 2), (3, 3), (5, 1)])
def test_rounds_points_order_and_values_are_upstreams(field, resolution0, depth):
    expected_rounds, expected = literal_rounds(field, resolution0, depth, threshold=0.0)
    seen: list[np.ndarray] = []
    grid = extract_grid_upstream(recording(field, seen), UpstreamMise(resolution0=resolution0, upsampling_steps=depth, batch_size=10**6))
    assert grid.n_levels == len(expected_rounds) == len(seen)
    resolution = resolution0 << depth
    for indices, points in zip(expected_rounds, seen):
        np.testing.assert_array_equal(points, upstream_query_points(indices, resolution, *grid_box(), float32_arithmetic=False))
    assert grid.n_evaluations == sum(len(r) for r in expected_rounds)
    np.testing.assert_array_equal(grid.values, expected)


def grid_box() -> tuple[np.ndarray, np.ndarray]:
    return np.full(3, -0.55), np.full(3, 0.55)


def test_upstream_goes_on_past_the_last_level_and_refines_where_occrecon_does_not():
    rounds, _ = literal_rounds(thin_slab, 4, 2, 0.0)
    assert len(rounds) > 3  # more rounds than 1 + upsampling steps
    upstream = extract_grid_upstream(thin_slab, UpstreamMise(resolution0=4, upsampling_steps=2))
    ours = extract_grid(thin_slab, resolution0=4, upsampling_steps=2)
    assert upstream.n_levels == len(rounds) and ours.n_levels == 3
    assert upstream.n_evaluations > ours.n_evaluations
    # Different fillings of the unevaluated points: copied (upstream) against interpolated (occrecon).
    assert not np.array_equal(upstream.values.astype(np.float32), ours.values)


def test_batches_follow_upstreams_order_and_size():
    calls: list[int] = []

    def query(points: np.ndarray) -> np.ndarray:
        calls.append(len(points))
        return wavy(points)

    grid = extract_grid_upstream(query, UpstreamMise(resolution0=4, upsampling_steps=2, batch_size=50))
    rounds, _ = literal_rounds(wavy, 4, 2, 0.0)
    expected = [min(50, len(r) - start) for r in rounds for start in range(0, len(r), 50)]
    assert calls == expected and grid.n_levels == len(rounds)


def test_fill_forward_copies_along_x_then_y_then_z():
    values = np.full((3, 3, 3), np.nan)
    values[0, 0, 0], values[2, 0, 0], values[0, 2, 1] = 1.0, 2.0, 3.0
    filled = fill_forward(values)
    assert filled[1, 0, 0] == 1.0 and filled[2, 1, 0] == 2.0  # x first, then y carries x's result
    assert filled[0, 2, 2] == 3.0 and filled[0, 1, 2] == 1.0  # z last
    assert not np.isnan(filled).any()


@pytest.mark.parametrize("resolution", [128, 160])
def test_query_points_are_rounded_as_each_generator_rounds_them(resolution):
    indices = np.indices((resolution + 1, 3, 3)).reshape(3, -1).T.astype(np.int64)
    indices[:, 1:] = indices[:, 1:] * (resolution // 2) + 1
    lower, upper = grid_box()
    box_size = 1 + 0.1
    # ONet: FloatTensor(points) / resolution, then box_size * (p - 0.5), all in float32 torch ops.
    onet = box_size * (torch.FloatTensor(indices) / resolution - 0.5)
    np.testing.assert_array_equal(upstream_query_points(indices, resolution, lower, upper, float32_arithmetic=True), onet.numpy())
    # ConvONet: the same in float64 numpy, then FloatTensor.
    convonet = torch.FloatTensor(box_size * (indices / resolution - 0.5))
    np.testing.assert_array_equal(upstream_query_points(indices, resolution, lower, upper, float32_arithmetic=False), convonet.numpy())
    # The two differ for some points: which is why each family keeps its own.
    assert not np.array_equal(onet.numpy(), convonet.numpy())


def test_no_upsampling_is_upstreams_dense_grid_of_resolution_points():
    grid = extract_grid_upstream(sphere, UpstreamMise(resolution0=10, upsampling_steps=0))
    assert grid.values.shape == (10, 10, 10) and grid.resolution == 9
    axis = 1.1 * torch.linspace(-0.5, 0.5, 10)
    expected = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3).numpy()
    np.testing.assert_array_equal(grid.values.reshape(-1), sphere(expected).astype(np.float64))


def test_upstream_logit_is_log_p_minus_log_one_minus_p():
    for p in (0.2, 0.45, 0.4, 0.5, 0.9):
        assert upstream_logit(p) == np.log(p) - np.log(1.0 - p)


def test_vertices_are_scaled_as_upstream_scales_them():
    field = wavy
    lattice = extract_grid_upstream(field, UpstreamMise(resolution0=4, upsampling_steps=2))
    vertices, faces = marching_cubes(lattice, 0.0)
    padded = np.pad(lattice.values, 1, "constant", constant_values=-1e6)
    expected_vertices, expected_faces = mcubes.marching_cubes(padded, 0.0)
    n = lattice.values.shape[0]
    # PyMCubes has no half-cell shift, so upstream's "- 0.5" for libmcubes is not applied.
    expected_vertices = 1.1 * ((expected_vertices - 1) / np.array([n - 1] * 3) - 0.5)
    np.testing.assert_array_equal(faces, expected_faces)
    np.testing.assert_array_equal(vertices, expected_vertices)


# --- through the pipeline ------------------------------------------------------------------


def tiny_folder(tmp_path: Path, family: str) -> tuple[Path, torch.nn.Module]:
    """A tiny points model of either family with a surface crossing the box, saved as a model folder."""
    config = copy.deepcopy(TINY_CONFIGS["points"])
    config["generation"] = {**config["generation"], "resolution": 4, "upsampling_steps": 2}
    if family == "onet":
        config["name"] = "tiny-onet-points"
        config["architecture"] = {
            "method": "onet", "encoder": "pointnet_resnet", "encoder_kwargs": {"hidden_dim": 16}, "decoder": "cbatchnorm",
            "decoder_kwargs": {"hidden_size": 32}, "encoder_latent": None, "c_dim": 16, "z_dim": 0, "padding": 0.1,
        }
    torch.manual_seed(3)
    net = build_network(config["architecture"]).eval()
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif not name.endswith("num_batches_tracked"):
                tensor.normal_(0, 0.3)
        queries = (torch.rand(1, 2000, 3) - 0.5) * 1.1
        logits = net.decode(queries, net.encode(cloud_tensor()))
        net.decoder.fc_out.bias -= logits.median() - upstream_logit(0.2)
    folder = save_model_folder(net, copy.deepcopy(config), tmp_path / family, card="# tiny\n")
    return folder, net


def cloud_tensor() -> torch.Tensor:
    p = torch.randn(1, 256, 3, generator=torch.Generator().manual_seed(0))
    return 0.4 * p / p.norm(dim=-1, keepdim=True) + torch.tensor([0.03, -0.02, 0.01])


def upstream_style_mesh(net: torch.nn.Module, inputs: torch.Tensor, family: str, resolution0: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's Generator3D on the oracle octree: float32 (ONet) or float64 (ConvONet) scaling, the
    network as upstream's modules compute, PyMCubes and upstream's vertex scaling."""
    threshold = np.log(0.2) - np.log(1.0 - 0.2)
    with torch.no_grad(), upstream_arithmetic(net):
        c = net.encode(inputs[None])
        mise = LiteralMise(resolution0, depth, threshold)
        locs = mise.query()
        while locs:
            points = np.array(locs, dtype=np.int64)
            if family == "onet":
                pointsf = 1.1 * (torch.FloatTensor(points) / mise.resolution - 0.5)
            else:
                pointsf = torch.FloatTensor(1.1 * (points / mise.resolution - 0.5))
            values = torch.cat([net.decode(chunk[None], c)[0] for chunk in torch.split(pointsf, 100_000)])
            mise.update(locs, values.numpy().astype(np.float64))
            locs = mise.query()
    grid = mise.to_dense()
    vertices, faces = mcubes.marching_cubes(np.pad(grid, 1, "constant", constant_values=-1e6), threshold)
    vertices = 1.1 * ((vertices - 1) / np.array([grid.shape[0] - 1] * 3) - 0.5)
    return vertices, faces


@pytest.mark.parametrize("family", ["onet", "convonet"])
def test_upstream_rule_without_normalisation_gives_upstreams_mesh_exactly(tmp_path, family):
    folder, net = tiny_folder(tmp_path, family)
    model = occrecon.load_model(folder, "cpu")
    cloud = cloud_tensor()[0].double().numpy()
    options = ReconstructOptions(mise_rule="upstream", normalize=False, input_noise=0.0)
    result = occrecon.reconstruct(model, "points", cloud, options)
    prepared = prepare_input("points", cloud, InputSpec(kind="points", n_points=256, noise=0.0, normalize="none"), seed=0)
    vertices, faces = upstream_style_mesh(model.net, prepared.tensor, family, 4, 2)
    assert len(faces) > 100
    np.testing.assert_array_equal(np.asarray(result.mesh.faces), faces)
    np.testing.assert_array_equal(np.asarray(result.mesh.vertices), vertices)
    # Normalised (the default), the same cloud gives another mesh: its box is moved and rescaled.
    normalised = occrecon.reconstruct(model, "points", cloud, options.replace(normalize=True))
    assert len(normalised.mesh.faces) != len(faces) or not np.array_equal(normalised.mesh.vertices, vertices)


def test_no_normalize_feeds_the_coordinates_as_given(points_model):
    model = occrecon.load_model(points_model, "cpu")
    cloud = cloud_tensor()[0].double().numpy() * 0.5 + 0.1
    result = occrecon.reconstruct(model, "points", cloud, normalize=False, input_noise=0.0)
    assert np.array_equal(np.sort(result.preview, axis=0), np.sort(cloud, axis=0))
    assert result.transform.scale == 1.0 and not np.any(result.transform.translation)
    assert any("no normalisation" in note for note in result.notes)


def test_options_name_the_rule_and_keep_normalisation_to_clouds(points_model):
    with pytest.raises(OptionError, match="--mise"):
        ReconstructOptions(mise_rule="fast").validate("points")
    with pytest.raises(OptionError, match="--no-normalize"):
        ReconstructOptions(normalize=False).validate("voxels")
    model = occrecon.load_model(points_model, "cpu")
    assert ReconstructOptions().resolve(model, "points").mise_rule == "occrecon"
    upstream = ReconstructOptions(mise_rule="upstream").resolve(model, "points")
    assert upstream.points_batch_size == 100_000  # upstream's batch, unless one is given
    assert ReconstructOptions(mise_rule="upstream", points_batch_size=512).resolve(model, "points").points_batch_size == 512


def test_a_model_config_can_choose_the_upstream_rule():
    from occrecon.config import GenerationDefaults
    from occrecon.errors import InvalidModelFolderError

    assert GenerationDefaults.from_dict({"mise_rule": "upstream"}).mise_rule == "upstream"
    with pytest.raises(InvalidModelFolderError, match="mise_rule"):
        GenerationDefaults.from_dict({"mise_rule": "octree"})


def test_cli_takes_mise_and_no_normalize(points_model, tmp_path, capsys):
    from occrecon.cli.main import main

    cloud = tmp_path / "cloud.xyz"
    np.savetxt(cloud, cloud_tensor()[0].numpy())
    with pytest.raises(SystemExit) as exit_info:
        main(["points", str(cloud), "-m", str(points_model), "--mise", "upstream", "--no-normalize", "--input-noise", "0", "-o", str(tmp_path / "out.obj"), "-q"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert (tmp_path / "out.obj").stat().st_size > 0


def test_the_octree_has_libmises_query_update_to_dense_interface():
    octree, literal = MiseOctree(3, 2, 0.0), LiteralMise(3, 2, 0.0)
    points = octree.query()
    while len(points):
        assert points.tolist() == [list(loc) for loc in literal.query()]
        values = wavy(upstream_query_points(points, octree.resolution, *grid_box(), float32_arithmetic=False)).astype(np.float64)
        octree.update(points, values)
        literal.update([tuple(p) for p in points.tolist()], values)
        points = octree.query()
    assert literal.query() == []
    np.testing.assert_array_equal(octree.to_dense(), literal.to_dense())
