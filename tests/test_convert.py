"""Upstream checkpoint layout → `occrecon convert` → `load_model`: identical logits, safe loading."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from occrecon.cli.main import main
from occrecon.convert import convert_checkpoint, guess_architecture
from occrecon.errors import CheckpointMismatchError, UnsafeCheckpointError
from occrecon.loading import load_model
from occrecon.nets import ARCHITECTURE_PRESETS, build_network
from occrecon.nets.coords import crop_index, crop_normalize

# Presets whose full-size forward pass is too slow for the default suite: their
# converted weights are compared tensor by tensor and the forward pass runs at a
# reduced feature-volume resolution (the state-dict layout does not depend on it).
HEAVY = {"convonet-room-grid64": 24, "convonet-scene": 24}


def randomized_network(name: str, seed: int = 0) -> torch.nn.Module:
    """A preset with random weights and random BatchNorm statistics (so buffers must survive too)."""
    torch.manual_seed(seed)
    net = build_network(ARCHITECTURE_PRESETS[name]["architecture"])
    with torch.no_grad():
        for key, tensor in net.state_dict().items():
            if key.endswith("running_mean"):
                tensor.normal_(0, 0.1)
            elif key.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif key.endswith("num_batches_tracked"):
                tensor.fill_(1234)
    return net.eval()


def write_upstream_checkpoint(net: torch.nn.Module, path: Path) -> Path:
    """The layout upstream's CheckpointIO writes, in torch's legacy (pre-1.6) serialisation."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    checkpoint = {
        "epoch_it": 12,
        "it": 34_000,
        "loss_val_best": np.float32(0.8125),
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)
    return path


def example_inputs(name: str, net: torch.nn.Module, generator: torch.Generator):
    preset = ARCHITECTURE_PRESETS[name]
    kind = preset["input"]["kind"]
    queries = (torch.rand(2, 64, 3, generator=generator) - 0.5) * 1.1
    if preset["task"] == "scene":
        resolution = HEAVY[name]
        lower, upper = torch.zeros(3), torch.full((3,), 1.0)
        points = torch.rand(1, 400, 3, generator=generator)
        index = crop_index(points[0], lower, upper, resolution, "grid").view(1, 1, -1)
        inputs = {"points": points, "index": {"grid": index}}
        q = torch.rand(1, 64, 3, generator=generator)
        return inputs, {"p": q, "p_n": {"grid": crop_normalize(q, lower, upper, "grid")}}
    if kind == "image":
        return torch.rand(2, 3, 224, 224, generator=generator), queries
    if kind == "points":
        return torch.rand(2, 300, 3, generator=generator) - 0.5, queries
    if kind == "voxels":
        return (torch.rand(2, 32, 32, 32, generator=generator) > 0.7).float(), queries
    return None, queries


def with_resolution(arch: dict, resolution: int) -> dict:
    arch = copy.deepcopy(arch)
    arch["encoder_kwargs"]["grid_resolution"] = resolution
    return arch


@pytest.mark.parametrize("name", sorted(ARCHITECTURE_PRESETS))
def test_converted_checkpoint_gives_identical_logits(name, tmp_path, capsys):
    net = randomized_network(name)
    upstream_file = ARCHITECTURE_PRESETS[name]["upstream"]["file"]
    pt = write_upstream_checkpoint(net, tmp_path / upstream_file)
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(pt), "-o", str(tmp_path / "model"), "--arch", name, "-q"])
    assert exit_info.value.code == 0, capsys.readouterr().err

    model = load_model(tmp_path / "model", "cpu")
    assert model.config.name == name and model.config.source["iteration"] == 34_000
    for key, tensor in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[key], tensor), key

    generator = torch.Generator().manual_seed(0)
    if name in HEAVY:
        reference = build_network(with_resolution(net.arch, HEAVY[name])).eval()
        reference.load_state_dict(net.state_dict())
        loaded = build_network(with_resolution(model.config.architecture, HEAVY[name])).eval()
        loaded.load_state_dict(model.net.state_dict())
        inputs, queries = example_inputs(name, net, generator)
        with torch.inference_mode():
            expected = reference.decode(queries, reference.encode(inputs))
            got = loaded.decode(queries, loaded.encode(inputs))
    else:
        inputs, queries = example_inputs(name, net, generator)
        with torch.inference_mode():
            expected = net.decode(queries, net.encode(inputs, batch_size=2))
        got = model.eval_points(inputs, queries)
    assert got.shape == expected.shape
    assert torch.equal(got, expected)


def test_auto_architecture_uses_layout_then_file_name(tmp_path):
    net = randomized_network("onet-points")
    assert guess_architecture(net.state_dict()) == "onet-points"
    plane = randomized_network("convonet-shapenet-3plane").state_dict()
    with pytest.raises(CheckpointMismatchError, match="several architectures fit"):
        guess_architecture(plane, "my_model.pt")
    assert guess_architecture(plane, "shapenet_3plane.pt") == "convonet-shapenet-3plane"


def test_legacy_cbn_checkpoint_converts_to_either_decoder(tmp_path):
    net = randomized_network("onet-img-legacy")
    pt = write_upstream_checkpoint(net, tmp_path / "onet_img2mesh-0c7780d1.pt")
    assert load_model(convert_checkpoint(pt, tmp_path / "auto"), "cpu").config.name == "onet-img-legacy"
    current = load_model(convert_checkpoint(pt, tmp_path / "current", arch="onet-img"), "cpu")
    image = torch.rand(1, 3, 224, 224)
    queries = torch.rand(1, 50, 3) - 0.5
    with torch.inference_mode():
        expected = net.decode(queries, net.encode(image))
    torch.testing.assert_close(current.eval_points(image, queries), expected, rtol=1e-5, atol=1e-5)


def test_module_prefix_is_stripped(tmp_path):
    net = randomized_network("onet-voxels")
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    pt = tmp_path / "wrapped.pt"
    torch.save({"model": state, "loss_val_best": np.float64(1.0)}, pt)
    model = load_model(convert_checkpoint(pt, tmp_path / "out", arch="onet-voxels"), "cpu")
    assert torch.equal(model.net.state_dict()["encoder.fc.weight"], net.state_dict()["encoder.fc.weight"])


def test_mismatching_checkpoint_reports_what_differs(tmp_path, capsys):
    state = randomized_network("onet-voxels").state_dict()
    state.pop("decoder.fc_out.weight")
    state["encoder.fc.weight"] = torch.zeros(3, 3)
    pt = tmp_path / "broken.pt"
    torch.save({"model": state}, pt)
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(pt), "-o", str(tmp_path / "out"), "--arch", "onet-voxels"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "decoder.fc_out.weight" in err and "encoder.fc.weight: shape (3, 3)" in err
    assert not (tmp_path / "out").exists()


class _Exploit:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "pwned"
    pt = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _Exploit(str(marker))}, pt)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        convert_checkpoint(pt, tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(pt), "-o", str(tmp_path / "out2")])
    assert exit_info.value.code == 2 and "refused" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_fp16_storage_stays_within_tolerance(tmp_path):
    net = randomized_network("convonet-shapenet-grid32")
    pt = write_upstream_checkpoint(net, tmp_path / "shapenet_grid32.pt")
    full = load_model(convert_checkpoint(pt, tmp_path / "full", arch="convonet-shapenet-grid32"), "cpu")
    half = load_model(convert_checkpoint(pt, tmp_path / "half", arch="convonet-shapenet-grid32", half=True), "cpu")
    assert (tmp_path / "half" / "model.safetensors").stat().st_size < 0.6 * (tmp_path / "full" / "model.safetensors").stat().st_size
    points = torch.rand(1, 500, 3) - 0.5
    queries = torch.rand(1, 200, 3) - 0.5
    torch.testing.assert_close(half.eval_points(points, queries), full.eval_points(points, queries), atol=2e-2, rtol=1e-2)


def test_push_to_hub_uploads_the_converted_folder(tmp_path, capsys, monkeypatch):
    calls = {}

    class FakeApi:
        def __init__(self, **kwargs):
            calls["init"] = kwargs

        def create_repo(self, repo_id, private, exist_ok):
            calls["create"] = (repo_id, private, exist_ok)

        def upload_folder(self, folder_path, repo_id, allow_patterns, commit_message):
            calls["upload"] = (sorted(p.name for p in Path(folder_path).iterdir()), repo_id, allow_patterns)
            return type("Info", (), {"commit_url": f"https://hub.example/{repo_id}/commit/abc"})()

    monkeypatch.setattr("huggingface_hub.HfApi", FakeApi)
    pt = write_upstream_checkpoint(randomized_network("onet-voxels"), tmp_path / "onet_voxel2mesh-52ee34d4.pt")
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(pt), "-o", str(tmp_path / "m"), "--push-to-hub", "org/onet-voxels", "--json"])
    assert exit_info.value.code == 0
    assert calls["create"] == ("org/onet-voxels", False, True)
    files, repo, patterns = calls["upload"]
    assert repo == "org/onet-voxels" and {"config.json", "model.safetensors", "README.md"} <= set(files)
    assert "commit/abc" in capsys.readouterr().out
