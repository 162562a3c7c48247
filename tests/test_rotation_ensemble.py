"""The rotation ensemble of object clouds: exact frame maps, one field, the options' limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import occrecon
from occrecon.loading import OccupancyModel
from occrecon.field import NetworkField, RotationEnsemble, encode_rotated, random_rotations
from occrecon.preprocess import prepare_input

SPEC = {"kind": "points", "n_points": None, "noise": 0.0}


class _EchoNet(torch.nn.Module):
    """Its encoding is the canonical cloud itself; it decodes a ball around the cloud's centroid."""

    def encode(self, inputs):
        return inputs

    def decode(self, p, c):
        centre = c.mean(dim=1, keepdim=True)
        radius2 = ((c - centre) ** 2).sum(-1).mean(-1, keepdim=True)
        # Relative to the cloud's own size, so the same ball whatever a member's scale.
        return 1.0 - ((p - centre) ** 2).sum(-1) / radius2


def echo_model() -> OccupancyModel:
    config = {"task": "points", "input": SPEC, "architecture": {"method": "convonet"}, "generation": {}}
    return OccupancyModel(_EchoNet(), config, "echo", "local", None, None, torch.device("cpu"))


def lopsided_cloud(seed: int = 0) -> np.ndarray:
    """An off-centre, stretched cloud in arbitrary units (no symmetry hides a wrong map)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(400, 3)) * [3.0, 1.0, 0.5] + [10.0, -4.0, 2.0]


def test_random_rotations_are_seeded_rotations_starting_with_the_identity():
    rotations = random_rotations(6, seed=3)
    assert rotations.shape == (6, 3, 3)
    assert np.array_equal(rotations[0], np.eye(3))
    np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (6, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0)
    assert np.array_equal(rotations, random_rotations(6, seed=3)) and not np.allclose(rotations, random_rotations(6, seed=4))


def test_members_see_the_same_cloud_through_their_frame_maps():
    cloud = lopsided_cloud()
    model = echo_model()
    main_input = prepare_input("points", cloud, SPEC, seed=0)
    ensemble = encode_rotated(model, cloud, main_input, SPEC, rotations=5, seed=0)
    assert isinstance(ensemble, RotationEnsemble) and ensemble.size == 5 and ensemble.encoding.shape[0] == 5
    # The unrotated pose, the one the model was trained in, keeps half the weight.
    torch.testing.assert_close(ensemble.weights, torch.tensor([0.5, 0.125, 0.125, 0.125, 0.125]))
    canonical = main_input.tensor
    for matrix, offset, member in zip(ensemble.matrices, ensemble.offsets, ensemble.encoding):
        # Member k encoded the turned, re-normalised cloud: the map must land every point on it.
        torch.testing.assert_close(canonical @ matrix.T + offset, member, atol=1e-5, rtol=0)
        assert member.abs().max() <= 0.5 + 1e-5  # and each member's cloud fills its own unit box
    # Every member decodes the same ball, so the average is the plain field.
    queries = torch.rand(1000, 3) - 0.5
    plain = NetworkField(model, model.net.encode(canonical[None])).decode(queries)
    torch.testing.assert_close(ensemble.decode(queries), plain, atol=1e-4, rtol=1e-4)


def test_ensemble_reconstruction_in_the_clouds_frame(points_model: Path):
    model = occrecon.load_model(str(points_model), "cpu")
    rng = np.random.default_rng(1)
    direction = rng.normal(size=(2000, 3))
    cloud = 0.4 * direction / np.linalg.norm(direction, axis=1, keepdims=True) * 5.0 + [1.0, 2.0, 3.0]
    plain = occrecon.reconstruct(model, "points", cloud)
    single = occrecon.reconstruct(model, "points", cloud, rotations=1)
    np.testing.assert_array_equal(plain.mesh.vertices, single.mesh.vertices)
    ensemble = occrecon.reconstruct(model, "points", cloud, rotations=3)
    assert len(ensemble.mesh.faces) > 0
    assert "rotation ensemble of 3 encodings" in ensemble.notes and not any("ensemble" in n for n in plain.notes)
    assert ensemble.n_evaluations % 3 == 0  # every query is decoded once per member
    # Extracted in the unrotated frame and mapped back: inside the cloud's padded box.
    low, high = cloud.min(axis=0), cloud.max(axis=0)
    pad = 0.1 * (high - low).max()
    assert np.all(ensemble.mesh.vertices >= low - pad) and np.all(ensemble.mesh.vertices <= high + pad)


def test_the_models_generation_settings_choose_the_ensemble(points_model: Path, tmp_path):
    import json
    import shutil

    folder = Path(shutil.copytree(points_model, tmp_path / "ensemble-model"))
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["generation"]["rotations"] = 2
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    model = occrecon.load_model(str(folder), "cpu")
    cloud = lopsided_cloud()
    assert "rotation ensemble of 2 encodings" in occrecon.reconstruct(model, "points", cloud).notes
    assert not any("rotation ensemble" in n for n in occrecon.reconstruct(model, "points", cloud, rotations=1).notes)


def test_decoder_rows_per_pass_suit_the_device_and_leave_the_mesh_alone(points_model: Path, image_model: Path):
    import dataclasses

    from occrecon.pipeline import ExtractionOptions

    model = occrecon.load_model(str(points_model), "cpu")
    # ~4 MiB of activations per layer on a CPU (within 4096..65536 rows); large batches on a GPU.
    assert model.query_rows == 65_536  # an 8-wide decoder
    assert occrecon.load_model(str(image_model), "cpu").query_rows == 4_096  # 256 wide
    assert dataclasses.replace(model, device=torch.device("cuda")).query_rows == 100_000
    assert ExtractionOptions().resolved(model).points_batch_size == model.query_rows

    rows: list[int] = []
    decode = model.net.decode

    def counting(p, c, **kwargs):
        rows.append(p.shape[0] * p.shape[1])
        return decode(p, c, **kwargs)

    model.net.decode = counting
    cloud = np.random.default_rng(2).normal(size=(1500, 3))
    cloud /= np.linalg.norm(cloud, axis=1, keepdims=True)
    small = ExtractionOptions(points_batch_size=3000, resolution=16, upsampling_steps=1)
    meshes = [occrecon.reconstruct(model, "points", cloud, rotations=3, options=small).mesh]
    assert 0 < max(rows) <= 3000  # rows count every member's copy of a query
    meshes.append(occrecon.reconstruct(model, "points", cloud, rotations=3, options=dataclasses.replace(small, points_batch_size=None)).mesh)
    np.testing.assert_allclose(meshes[0].vertices, meshes[1].vertices, atol=1e-5)
