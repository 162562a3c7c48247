"""`occrecon sample` and `occrecon.sample`: shapes from an unconditional model's prior, and interpolation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import occrecon
from occrecon.cli.main import main
from occrecon.errors import NoSurfaceError, OccreconError
from occrecon.loading import load_model, save_model_folder
from occrecon.nets import build_network
from occrecon.sampling import draw_latents, interpolate, interpolate_latents, sample

Z_DIM = 8

TINY_UNCOND = {
    "name": "tiny-onet-uncond",
    "task": "unconditional",
    "architecture": {
        "method": "onet",
        "encoder": None,
        "encoder_kwargs": {},
        "decoder": "simple",
        "decoder_kwargs": {"hidden_size": 16},
        "encoder_latent": None,
        "c_dim": 0,
        "z_dim": Z_DIM,
        "padding": 0.1,
    },
    "input": {"kind": "none"},
    "generation": {"threshold": 0.2, "resolution": 8, "upsampling_steps": 1, "padding": 0.1, "refinement_steps": 0, "simplify_faces": None},
}


@pytest.fixture(scope="module")
def uncond_dir(tmp_path_factory) -> Path:
    """A tiny random unconditional ONet whose field crosses the threshold inside the box for any plausible z."""
    torch.manual_seed(0)
    net = build_network(TINY_UNCOND["architecture"]).eval()
    with torch.no_grad():
        # Random weights let z move the field more than space does; give space the larger say, so
        # every code's field crosses the threshold in the box (and codes still differ visibly).
        net.decoder.fc_z.weight *= 0.5
        net.decoder.fc_p.weight *= 3
        queries = (torch.rand(4, 2000, 3, generator=torch.Generator().manual_seed(1)) - 0.5) * 1.1
        z = torch.randn(4, Z_DIM, generator=torch.Generator().manual_seed(2))
        logits = net.decode(queries, net.encode(None, batch_size=4), z=z)
        net.decoder.fc_out.bias -= logits.median() + 1.386  # the median logit at the 0.2 threshold
    return save_model_folder(net, dict(TINY_UNCOND), tmp_path_factory.mktemp("models") / "uncond", card="# tiny\n")


@pytest.fixture(scope="module")
def uncond(uncond_dir):
    return load_model(uncond_dir, "cpu")


def _same(a, b) -> bool:
    return a.vertices.shape == b.vertices.shape and np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)


def _run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_latents_come_from_the_seed_alone():
    a = draw_latents(Z_DIM, 5, seed=7)
    assert a.shape == (5, Z_DIM) and a.dtype == torch.float32
    assert torch.equal(a, draw_latents(Z_DIM, 5, seed=7))
    assert all(torch.equal(a[:k], draw_latents(Z_DIM, k, seed=7)) for k in (1, 2, 3))  # -n 2 is how -n 5 begins
    assert not torch.equal(a, draw_latents(Z_DIM, 5, seed=8))
    codes, ts = interpolate_latents(a[0], a[1], 4)
    assert ts == [0.0, 1 / 3, 2 / 3, 1.0] and torch.equal(codes[0], a[0]) and torch.equal(codes[-1], a[1])
    torch.testing.assert_close(codes[1], a[0] + (a[1] - a[0]) / 3)
    with pytest.raises(ValueError):
        interpolate_latents(a[0], a[1], 1)


def test_sample_gives_n_meshes_reproducibly(uncond):
    meshes = occrecon.sample(uncond, 3, seed=0)
    assert occrecon.sample is sample
    assert len(meshes) == 3 and all(len(m.faces) > 0 for m in meshes)
    again = sample(uncond, 3, seed=0)
    assert all(_same(a, b) for a, b in zip(meshes, again))
    first_two = sample(uncond, 2, seed=0)
    assert _same(first_two[0], meshes[0]) and _same(first_two[1], meshes[1])
    assert not _same(meshes[0], meshes[1])  # different codes, different shapes
    assert not _same(sample(uncond, 1, seed=1)[0], meshes[0])
    # The mesh lies in the model's box.
    assert np.all(np.abs(np.concatenate([m.vertices for m in meshes])) <= 0.55 + 1e-6)


def test_interpolation_ends_are_the_two_samples(uncond):
    walk = interpolate(uncond, 5, seed=3)
    ends = sample(uncond, 2, seed=3)
    assert len(walk) == 5
    assert _same(walk[0], ends[0]) and _same(walk[-1], ends[1])
    assert not _same(walk[2], ends[0]) and not _same(walk[2], ends[1])


def test_extraction_settings_apply(uncond):
    coarse = sample(uncond, 1, seed=0, resolution=4, upsampling_steps=0)[0]
    fine = sample(uncond, 1, seed=0, resolution=8, upsampling_steps=2)[0]
    assert len(fine.faces) > 4 * len(coarse.faces)
    with pytest.raises(NoSurfaceError, match="no surface at threshold 0.999999"):
        sample(uncond, 1, seed=0, threshold=0.999999)


def test_only_unconditional_models_sample(points_model, uncond_dir):
    with pytest.raises(OccreconError, match="needs an unconditional one"):
        sample(load_model(points_model, "cpu"), 1)
    assert len(sample(str(uncond_dir), 1, seed=0, device="cpu")) == 1  # a name or folder is loaded


def test_cli_writes_one_mesh_per_sample_and_skips_finished_ones(uncond_dir, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, out, err = _run(["sample", uncond_dir, "-n", 4, "-d", out_dir, "--seed", 0, "--json", "-q"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["status"] for r in rows] == ["ok"] * 4 and [r["index"] for r in rows] == [0, 1, 2, 3]
    files = sorted(out_dir.glob("*.obj"))
    assert [f.name for f in files] == [f"uncond-seed0-{i:03d}.obj" for i in range(4)]
    assert all(r["vertices"] > 0 and r["faces"] > 0 and Path(r["output"]).is_file() for r in rows)
    first = {f.name: f.read_bytes() for f in files}

    code, out, _ = _run(["sample", uncond_dir, "-n", 4, "-d", out_dir, "--json", "-q"], capsys)
    assert code == 0 and [json.loads(line)["status"] for line in out.splitlines()] == ["skipped"] * 4

    code, out, _ = _run(["sample", uncond_dir, "-n", 2, "-d", out_dir, "--overwrite", "-q"], capsys)
    assert code == 0 and {f.name: f.read_bytes() for f in sorted(out_dir.glob("*.obj"))} == first  # --seed is deterministic

    code, _, _ = _run(["sample", uncond_dir, "-n", 1, "-d", out_dir, "--seed", 1, "-q"], capsys)
    assert code == 0 and (out_dir / "uncond-seed1-000.obj").read_bytes() != first["uncond-seed0-000.obj"]


def test_cli_interpolation_ends_equal_the_samples(uncond_dir, tmp_path, capsys):
    assert _run(["sample", uncond_dir, "-n", 2, "-d", tmp_path, "--seed", 5, "-f", "ply", "-q"], capsys)[0] == 0
    code, out, err = _run(["sample", uncond_dir, "--interpolate", 4, "-d", tmp_path, "--seed", 5, "-f", "ply", "--json"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["t"] for r in rows] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    walk = [tmp_path / f"uncond-seed5-interp4-{i:03d}.ply" for i in range(4)]
    assert all(p.is_file() for p in walk)
    assert walk[0].read_bytes() == (tmp_path / "uncond-seed5-000.ply").read_bytes()
    assert walk[3].read_bytes() == (tmp_path / "uncond-seed5-001.ply").read_bytes()
    assert walk[1].read_bytes() != walk[0].read_bytes()
    assert "4 done, 0 skipped, 0 failed" in err


def test_cli_extraction_options_and_prefix(uncond_dir, tmp_path, capsys):
    code, out, err = _run(["sample", uncond_dir, "-d", tmp_path, "--prefix", "chair", "--resolution", 4, "--upsampling-steps", 0, "--json", "-q"], capsys)
    assert code == 0, err
    row = json.loads(out)
    assert row["n_evaluations"] == 5**3 and Path(row["output"]) == tmp_path / "chair-000.obj"


def test_cli_failures(uncond_dir, points_model, tmp_path, capsys):
    code, _, err = _run(["sample", uncond_dir, "-n", 2, "--interpolate", 3, "-d", tmp_path], capsys)
    assert code == 2 and "either -n" in err
    code, _, err = _run(["sample", points_model, "-d", tmp_path], capsys)
    assert code == 2 and "needs an unconditional one" in err and "Traceback" not in err
    code, _, err = _run(["sample", uncond_dir, "-n", 2, "-d", tmp_path, "--threshold", 0.999999, "-q"], capsys)
    assert code == 1 and err.count("Error:") == 2 and "no surface" in err
    assert not list(tmp_path.glob("*.obj"))
