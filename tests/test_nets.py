"""Tests of occrecon.nets: upstream state-dict layouts, conventions and invariances."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from occrecon.nets import (
    ARCHITECTURE_PRESETS,
    OccupancyNet,
    build_network,
    current_cbn_to_legacy,
    get_preset,
    legacy_cbn_to_current,
)
from occrecon.nets.convonet import LocalVoxelEncoder, map_to_local, sample_feature
from occrecon.nets.coords import (
    coordinate_to_index,
    crop_index,
    crop_normalize,
    normalize_grid_coordinate,
    normalize_plane_coordinate,
)
from occrecon.nets.scatter import pool_local, scatter_max, scatter_mean

FIXTURE = json.loads((Path(__file__).parent / "data" / "upstream_keys.json").read_text(encoding="utf-8"))

# Preset -> stem of the upstream checkpoint description it reproduces.
CHECKPOINT_STEM = {
    "onet-img": "onet_img2mesh_3-f786b04a",
    "onet-img-legacy": "onet_img2mesh-0c7780d1",
    "onet-points": "onet_pcl2mesh-5c0be168",
    "onet-voxels": "onet_voxel2mesh-52ee34d4",
    "onet-uncond-airplanes": "onet_uncond_airplanes-26c9d089",
    "onet-uncond-cars": "onet_uncond_cars-59320701",
    "onet-uncond-chairs": "onet_uncond_chairs-800ea1f3",
    "onet-uncond-sofas": "onet_uncond_sofas-bf6c039d",
    "convonet-shapenet-1plane": "shapenet_1plane",
    "convonet-shapenet-3plane": "shapenet_3plane",
    "convonet-shapenet-grid32": "shapenet_grid32",
    "convonet-shapenet-3plane-partial": "shapenet_3plane_partial",
    "convonet-room-1plane": "room_1plane",
    "convonet-room-3plane": "room_3plane",
    "convonet-room-grid32": "room_grid32",
    "convonet-room-grid64": "room_grid64",
    "convonet-room-combine": "room_combine",
    "convonet-voxels-1plane": "voxel_shapenet_1plane",
    "convonet-voxels-3plane": "voxel_shapenet_3plane",
    "convonet-voxels-grid32": "voxel_shapenet_grid32",
    "convonet-scene": "crop_room_grid64",
}

# Total parameter counts from upstream.md (sections 1.3 and 4.2).
PARAMETER_COUNTS = {
    "onet-img": 13_414_465,
    "onet-img-legacy": 13_414_465,
    "onet-points": 10_373_889,
    "onet-voxels": 7_857_473,
    "onet-uncond-airplanes": 298_369,
    "onet-uncond-cars": 298_369,
    "onet-uncond-chairs": 298_369,
    "onet-uncond-sofas": 298_369,
    "convonet-shapenet-1plane": 1_978_209,
    "convonet-shapenet-3plane": 1_978_209,
    "convonet-shapenet-grid32": 1_068_545,
    "convonet-shapenet-3plane-partial": 1_978_209,
    "convonet-room-1plane": 7_812_705,
    "convonet-room-3plane": 7_812_705,
    "convonet-room-grid32": 1_068_545,
    "convonet-room-grid64": 4_166_657,
    "convonet-room-combine": 8_838_017,
    "convonet-voxels-1plane": 1_951_873,
    "convonet-voxels-3plane": 1_951_873,
    "convonet-voxels-grid32": 1_042_209,
    "convonet-scene": 4_166_657,
}

# Forward passes on full-size room feature volumes are slow on 2 CPU cores;
# these presets are only built and checked for keys.
SKIP_FORWARD = {"convonet-room-3plane", "convonet-room-grid64", "convonet-room-combine"}

TOP_LEVEL_KEYS = {"name", "task", "architecture", "input", "generation", "scene", "upstream"}
ARCH_KEYS = {"method", "encoder", "encoder_kwargs", "decoder", "decoder_kwargs", "encoder_latent", "c_dim", "z_dim",
             "padding"}


def randomize_(model: torch.nn.Module, seed: int = 0, std: float = 0.1) -> torch.nn.Module:
    """Fill parameters and BN statistics with random values (upstream zero-inits several layers)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * std)
    return model


def tiny_inputs(preset: dict, batch_size: int) -> object:
    """Small inputs of the right kind for a preset."""
    gen = torch.Generator().manual_seed(1)
    kind = preset["input"]["kind"]
    if kind == "image":
        return torch.rand(batch_size, 3, 224, 224, generator=gen)
    if kind == "voxels":
        return (torch.rand(batch_size, 32, 32, 32, generator=gen) > 0.7).float()
    if kind == "points":
        return torch.rand(batch_size, 64, 3, generator=gen) - 0.5
    return None


def test_presets_cover_every_checkpoint_and_are_json():
    assert set(ARCHITECTURE_PRESETS) == set(CHECKPOINT_STEM)
    assert json.loads(json.dumps(ARCHITECTURE_PRESETS)) == ARCHITECTURE_PRESETS
    for name, preset in ARCHITECTURE_PRESETS.items():
        assert set(preset) == TOP_LEVEL_KEYS, name
        assert preset["name"] == name
        assert set(preset["architecture"]) == ARCH_KEYS, name
        assert preset["task"] in {"image", "points", "voxels", "unconditional", "scene"}
        assert preset["upstream"]["license"] == "MIT"
        assert preset["upstream"]["url"].endswith(preset["upstream"]["file"])
        assert (preset["scene"] is not None) == (preset["task"] == "scene")


@pytest.mark.parametrize("name", sorted(CHECKPOINT_STEM))
def test_state_dict_matches_upstream(name: str):
    model = build_network(ARCHITECTURE_PRESETS[name])
    state = model.state_dict()
    expected = FIXTURE[CHECKPOINT_STEM[name]]
    assert set(state) == set(expected)
    assert list(state) == list(expected), "key order differs from upstream"
    for key, tensor in state.items():
        assert list(tensor.shape) == expected[key], key
        wanted = torch.int64 if key.endswith("num_batches_tracked") else torch.float32
        assert tensor.dtype == wanted, key
    assert sum(p.numel() for p in model.parameters()) == PARAMETER_COUNTS[name]
    assert model.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True)


@pytest.mark.parametrize("name", sorted(set(CHECKPOINT_STEM) - SKIP_FORWARD - {"convonet-scene"}))
def test_forward_shape(name: str):
    preset = ARCHITECTURE_PRESETS[name]
    model = randomize_(build_network(preset)).eval()
    batch_size = 1 if preset["input"]["kind"] in ("image", "voxels") else 2
    p = torch.rand(batch_size, 17, 3) * 1.1 - 0.55
    with torch.no_grad():
        logits = model(p, tiny_inputs(preset, batch_size))
    assert logits.shape == (batch_size, 17)
    assert torch.isfinite(logits).all()


def test_build_network_accepts_architecture_block_and_rejects_unknown():
    preset = get_preset("convonet-shapenet-3plane")
    a = build_network(preset)
    b = build_network(preset["architecture"])
    assert isinstance(a, OccupancyNet) and not a.training
    assert list(a.state_dict()) == list(b.state_dict())
    bad = copy.deepcopy(preset["architecture"])
    bad["decoder"] = "nope"
    with pytest.raises(ValueError):
        build_network(bad)
    with pytest.raises(KeyError):
        get_preset("nope")


def test_unconditional_encode_and_prior_mean():
    model = randomize_(build_network(ARCHITECTURE_PRESETS["onet-uncond-chairs"]))
    c = model.encode(None, batch_size=3)
    assert c.shape == (3, 0)
    assert model.encoder is None and hasattr(model, "encoder_latent")
    p = torch.rand(3, 10, 3) - 0.5
    with torch.no_grad():
        default = model.decode(p, c)
        explicit = model.decode(p, c, z=torch.zeros(3, 128))
        sampled = model.decode(p, c, z=torch.ones(3, 128))
        mean, logstd = model.encoder_latent(p, (p[..., 0] > 0).float())
    assert torch.equal(default, explicit)
    assert not torch.allclose(default, sampled)
    assert mean.shape == logstd.shape == (3, 128)


def test_legacy_cbn_conversion_gives_identical_logits():
    legacy = randomize_(build_network(ARCHITECTURE_PRESETS["onet-img-legacy"]), seed=3).eval()
    current = build_network(ARCHITECTURE_PRESETS["onet-img"]).eval()
    converted = legacy_cbn_to_current(legacy.state_dict())
    assert list(converted) == list(current.state_dict())
    current.load_state_dict(converted, strict=True)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    p = torch.rand(2, 25, 3) - 0.5
    with torch.no_grad():
        expected = legacy(p, images)
        assert torch.isfinite(expected).all()
        torch.testing.assert_close(current(p, images), expected, rtol=0, atol=1e-5)
    back = current_cbn_to_legacy(converted)
    assert list(back) == list(legacy.state_dict())
    for key, value in legacy.state_dict().items():
        assert torch.equal(back[key], value), key
    weight = converted["decoder.block0.bn_0.conv_gamma.weight"]
    assert weight.shape == (256, 256, 1)


def test_onet_decode_independent_of_query_chunking():
    model = randomize_(build_network(ARCHITECTURE_PRESETS["onet-points"]), seed=5, std=0.03).eval()
    cloud = torch.rand(1, 40, 3) - 0.5
    p = torch.rand(1, 30, 3) - 0.5
    with torch.no_grad():
        c = model.encode(cloud)
        full = model.decode(p, c)
        halves = torch.cat([model.decode(p[:, :15], c), model.decode(p[:, 15:], c)], dim=1)
    assert torch.isfinite(full).all() and full.abs().max() > 1e-3
    torch.testing.assert_close(full, halves, rtol=1e-5, atol=1e-6)


def test_image_encoder_normalises_inside():
    model = build_network(ARCHITECTURE_PRESETS["onet-img"])
    gray = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    from occrecon.nets.onet import normalize_imagenet

    assert torch.allclose(normalize_imagenet(gray), torch.zeros(1, 3, 8, 8), atol=1e-6)
    assert model.encoder.normalize


# --- scatter and coordinate conventions -------------------------------------------------


def test_index_on_cell_border_lands_in_floor_cell():
    u = torch.tensor([[[0.5, 0.0], [0.25, 0.75], [0.2499, 0.0]]])
    index = coordinate_to_index(u, 4)
    # (x, y) -> x + 4 y; 0.5 * 4 = 2 exactly, so the upper cell.
    assert index.tolist() == [[[2, 1 + 4 * 3, 0]]]
    grid = coordinate_to_index(torch.tensor([[[0.5, 0.25, 0.75]]]), 4)
    assert grid.item() == 2 + 4 * (1 + 4 * 3)


def test_normalisation_eps_and_clamping():
    p = torch.tensor([[[0.0, 0.0, 0.0], [0.55, 0.55, 0.55], [0.7, -0.7, 0.0]]])
    uv = normalize_plane_coordinate(p, "xz")
    assert torch.allclose(uv[0, 0], torch.tensor([0.5, 0.5]))
    assert (uv[0, 1] < 1).all() and (uv[0, 1] > 0.9999).all()
    assert uv[0, 2, 0].item() == pytest.approx(1 - 1e-5, abs=1e-7)
    assert uv[0, 2, 1].item() == 0.5
    assert normalize_plane_coordinate(p, "xy")[0, 2, 1].item() == 0.0
    g = normalize_grid_coordinate(p)
    assert g[0, 2, 0].item() == pytest.approx(1 - 1e-3, abs=1e-7)
    assert g[0, 2, 1].item() == 0.0
    # The grid uses a 1e-3 eps in the scale as well: 0.5 / 1.101 + 0.5.
    assert g[0, 1, 0].item() == pytest.approx(0.55 / 1.101 + 0.5, abs=1e-6)
    assert coordinate_to_index(g, 32)[0, 0, 2].item() == 31 + 32 * (0 + 32 * 16)


def test_scatter_mean_and_max_on_hand_made_cells():
    src = torch.tensor([[[1.0, 3.0, -2.0, -4.0, 5.0]]])
    index = torch.tensor([[[0, 0, 2, 2, 3]]])
    mean = scatter_mean(src, index, 5)
    assert mean.tolist() == [[[2.0, 0.0, -3.0, 5.0, 0.0]]]
    top = scatter_max(src, index, 5)
    # Negative features keep their true maximum; empty cells are 0.
    assert top.tolist() == [[[3.0, 0.0, -2.0, 5.0, 0.0]]]


def test_scatter_matches_naive_loops():
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(2, 3, 50, generator=gen)
    index = torch.randint(0, 7, (2, 1, 50), generator=gen)
    mean, top = scatter_mean(src, index, 9), scatter_max(src, index, 9)
    for b in range(2):
        for cell in range(9):
            members = src[b][:, index[b, 0] == cell]
            if members.shape[1] == 0:
                assert (mean[b, :, cell] == 0).all() and (top[b, :, cell] == 0).all()
            else:
                torch.testing.assert_close(mean[b, :, cell], members.mean(dim=1))
                assert torch.equal(top[b, :, cell], members.max(dim=1).values)


def test_pool_local_sums_over_feature_types():
    feats = torch.tensor([[[1.0], [2.0], [4.0]]])
    index = {"xz": torch.tensor([[[0, 0, 1]]]), "grid": torch.tensor([[[0, 1, 1]]])}
    pooled = pool_local(feats, index, {"xz": 2, "grid": 2})
    assert pooled.flatten().tolist() == [2.0 + 1.0, 2.0 + 4.0, 4.0 + 4.0]


def test_grid_layout_round_trip_through_encoder_and_sampling():
    # A point in cell (x=1, y=2, z=3) of a 4^3 grid must appear at volume[z, y, x],
    # and sampling at that cell's align_corners coordinate must read it back.
    reso = 4
    p = torch.tensor([[[(1.5 / reso - 0.5) * 1.101, (2.5 / reso - 0.5) * 1.101, (3.5 / reso - 0.5) * 1.101]]])
    index = coordinate_to_index(normalize_grid_coordinate(p), reso)
    assert index.item() == 1 + reso * (2 + reso * 3)
    volume = scatter_mean(torch.tensor([[[7.0]]]), index, reso**3).reshape(1, 1, reso, reso, reso)
    assert volume[0, 0, 3, 2, 1].item() == 7.0 and volume.sum().item() == 7.0
    u = torch.tensor([[[1 / (reso - 1), 2 / (reso - 1), 3 / (reso - 1)]]])
    assert sample_feature(u, volume).item() == pytest.approx(7.0)
    plane = torch.zeros(1, 1, reso, reso)
    plane[0, 0, 3, 1] = 5.0  # 'xz' plane: row = z, column = x
    assert sample_feature(torch.tensor([[[1 / 3, 1.0]]]), plane).item() == pytest.approx(5.0)


def test_convonet_voxel_positions_use_linspace():
    centres = LocalVoxelEncoder.voxel_centres((32, 32, 32))
    assert centres.shape == (32**3, 3)
    assert torch.allclose(centres[0], torch.tensor([-0.5, -0.5, -0.5]))
    assert torch.allclose(centres[-1], torch.tensor([0.5, 0.5, 0.5]))
    # Row-major over [x, y, z]: voxel (1, 0, 0) is entry 32 * 32.
    assert torch.allclose(centres[32 * 32], torch.tensor([-0.5 + 1 / 31, -0.5, -0.5]))


@pytest.mark.parametrize("name", ["convonet-shapenet-3plane", "convonet-shapenet-grid32"])
def test_convonet_decode_batch_and_chunk_invariant(name: str):
    model = randomize_(build_network(ARCHITECTURE_PRESETS[name]), seed=7).eval()
    gen = torch.Generator().manual_seed(2)
    clouds = torch.rand(2, 100, 3, generator=gen) - 0.5
    p = torch.rand(2, 40, 3, generator=gen) * 1.1 - 0.55
    with torch.no_grad():
        c = model.encode(clouds)
        full = model.decode(p, c)
        halves = torch.cat([model.decode(p[:, :20], c), model.decode(p[:, 20:], c)], dim=1)
        single = model.decode(p[1:], model.encode(clouds[1:]))
        raw_model = copy.deepcopy(model)
        raw_model.encoder.unet = raw_model.encoder.unet3d = None
        raw_full, raw_single = raw_model.encode(clouds), raw_model.encode(clouds[1:])
    for key, volume in raw_single.items():
        assert torch.equal(volume, raw_full[key][1:]), key
    torch.testing.assert_close(halves, full, rtol=0, atol=1e-6)
    # Scattered volumes are bit-identical across batch sizes; the U-Net's
    # convolutions may pick batch-dependent kernels, hence a relative tolerance.
    torch.testing.assert_close(single, full[1:], rtol=1e-4, atol=1e-4)


# --- sliding-window crop model ------------------------------------------------------------


def small_scene_model() -> OccupancyNet:
    preset = get_preset("convonet-scene")
    preset["architecture"]["encoder_kwargs"]["grid_resolution"] = 16  # multiple of 2**(levels-1)
    return randomize_(build_network(preset), seed=11).eval()


def test_crop_model_encode_decode_interfaces():
    model = small_scene_model()
    assert model.is_crop_model
    unit = model.arch["encoder_kwargs"]["unit_size"]
    reso = 16
    lower, upper = torch.zeros(3), torch.full((3,), reso * unit)
    gen = torch.Generator().manual_seed(4)
    points = torch.rand(200, 3, generator=gen) * (upper - lower) + lower
    index = crop_index(points, lower, upper, reso, "grid")
    assert int(index.min()) >= 0 and int(index.max()) < reso**3
    inputs = {"points": points[None], "index": {"grid": index[None, None]}}
    query = torch.rand(1, 30, 3, generator=gen) * (upper - lower) + lower
    p_in = {"p": query, "p_n": {"grid": crop_normalize(query, lower, upper, "grid")}}
    with torch.no_grad():
        c = model.encode(inputs)
        logits = model.decode(p_in, c)
        direct = model(p_in, inputs)
    assert c["grid"].shape == (1, 32, reso, reso, reso)
    assert logits.shape == (1, 30)
    assert torch.equal(logits, direct)
    # Local coordinates make the MLP input periodic in unit_size.
    assert torch.allclose(map_to_local(torch.tensor([-0.25 * unit, 1.25 * unit]), unit), torch.tensor([0.75, 0.25]))


def test_crop_encoder_ignores_overflow_bin_in_volume():
    model = small_scene_model()
    reso = 16
    gen = torch.Generator().manual_seed(6)
    points = torch.rand(1, 50, 3, generator=gen) * 0.3
    index = torch.randint(0, reso**3, (1, 1, 50), generator=gen)
    overflow = index.clone()
    overflow[..., 40:] = reso**3
    with torch.no_grad():
        fea = model.encoder({"points": points, "index": {"grid": overflow}})
    assert fea["grid"].shape == (1, 32, reso, reso, reso)
    assert torch.isfinite(fea["grid"]).all()


def test_unet_conv3d_inference_kernel_matches_pytorch_s_and_still_trains():
    from occrecon.nets.unet import Conv3d

    torch.manual_seed(0)
    conv = Conv3d(16, 32, 3, padding=1, bias=False)
    plain = torch.nn.Conv3d(16, 32, 3, padding=1, bias=False)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(1, 16, 10, 10, 10)  # 1·16·10·10 ≤ 20480: PyTorch itself would take its native kernel
    with torch.inference_mode():
        torch.testing.assert_close(conv(x), plain(x), atol=1e-5, rtol=1e-5)
    y = conv(x.requires_grad_())
    y.square().sum().backward()
    assert conv.weight.grad is not None and x.grad is not None
